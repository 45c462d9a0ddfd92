//! `apogee clients list` (mqadmin's consumerConnection / producerConnection):
//! the producers and consumers with a live Telemetry session to any broker
//! group's master or to the NameServer asked, merged by client id.

use crate::admin::Admin;
use crate::error::ToolResult;
use crate::output::TableRow;
use apogee_proto::cluster;
use serde::Serialize;

/// One connected client.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ClientRow {
    pub client_id: String,
    pub kind: String,
    pub address: String,
    pub language: String,
    pub version: String,
    pub group: Option<String>,
    pub topics: Vec<String>,
    pub connected_to: Vec<String>,
}

impl TableRow for ClientRow {
    fn headers() -> Vec<&'static str> {
        vec![
            "CLIENT ID",
            "KIND",
            "ADDRESS",
            "LANGUAGE",
            "VERSION",
            "GROUP",
            "TOPICS",
            "CONNECTED TO",
        ]
    }
    fn cells(&self) -> Vec<String> {
        let or_dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        vec![
            self.client_id.clone(),
            self.kind.clone(),
            or_dash(&self.address),
            or_dash(&self.language),
            or_dash(&self.version),
            self.group.clone().unwrap_or_else(|| "-".into()),
            or_dash(&self.topics.join(",")),
            self.connected_to.join(","),
        ]
    }
}

fn row(c: cluster::ConnectedClient) -> ClientRow {
    ClientRow {
        group: (!c.group.is_empty()).then_some(c.group),
        client_id: c.client_id,
        kind: c.kind,
        address: c.address,
        language: c.language,
        version: c.version,
        topics: c.topics,
        connected_to: c.connected_to,
    }
}

impl Admin {
    /// Every connected client, by client id.
    pub async fn list_clients(&self) -> ToolResult<Vec<ClientRow>> {
        let resp = self
            .admin
            .clone()
            .list_clients(self.req(cluster::ListClientsRequest {}))
            .await
            .map_err(self.err(None))?
            .into_inner();
        Ok(resp.clients.into_iter().map(row).collect())
    }
}
