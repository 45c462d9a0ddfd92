//! What a signed-in user who is not an admin is shown instead of a refusal: the Topics and
//! Consumer groups lists keep the topics and groups their ACL entries grant (the NameServer
//! filters ListTopics and ListGroups for them), the cluster page keeps what the NameServer
//! knows of its brokers, and each page says in a sentence what they may not see there and
//! lists the ACL entries that decide it (ListAcls answers them their own).

use crate::page::Page;
use crate::pages::Table;
use apogee_admin::access::AclRow;

/// The note and the user's entries a page shows a user who is not an admin.
pub struct UserScope {
    /// One plain sentence: what the page shows them, and what needs an admin.
    pub note: String,
    /// Their ACL entries of the page's kind (all of them on the cluster page).
    pub acls: Table,
    /// Why their entries could not be listed, if they could not.
    pub acls_error: Option<String>,
}

/// What a page is about, for [`scope`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Cluster,
    Topics,
    Groups,
}

impl Subject {
    /// The sentence for `user` on a page of this subject.
    pub fn note(self, user: &str) -> String {
        let who = format!("You are signed in as {user}, who is not an admin:");
        match self {
            Subject::Topics => format!(
                "{who} this list shows only the topics your ACL entries let you publish to or \
                 subscribe to. Other topics, a topic's queues and offsets, and creating, changing \
                 or deleting topics need an admin."
            ),
            Subject::Groups => format!(
                "{who} this list shows only the consumer groups your ACL entries let you use. \
                 Other groups, a group's queues and clients, offset resets and dead letters need \
                 an admin."
            ),
            Subject::Cluster => format!(
                "{who} this page shows the brokers as the NameServer knows them. Each broker's \
                 log end, replication lag and in-sync state, the controller's state and the \
                 NameServers the brokers report are read from the brokers' and the controller's \
                 admin service, which needs an admin."
            ),
        }
    }

    /// The ACL entry kind the page lists (`apogee acl list`'s KIND), None for every kind.
    fn kind(self) -> Option<&'static str> {
        match self {
            Subject::Topics => Some("topic"),
            Subject::Groups => Some("group"),
            Subject::Cluster => None,
        }
    }
}

/// The scope of `page`'s user on a page of `subject`; None for admins and when
/// authentication is off (they see everything).
pub async fn scope(page: &Page, subject: Subject) -> Option<UserScope> {
    let user = page.session().user.as_ref().filter(|u| !u.admin)?;
    let listed = page.admin().list_acls(Some(user.access_key())).await;
    let (rows, acls_error) = match listed {
        Ok(rows) => (rows, None),
        Err(e) => (
            Vec::new(),
            Some(format!("Your ACL entries could not be listed: {e}")),
        ),
    };
    Some(UserScope {
        note: subject.note(user.access_key()),
        acls: entries_table(rows, subject.kind()),
        acls_error,
    })
}

/// The entries of `kind` (every kind: None), as `apogee acl list` shows them.
fn entries_table(mut rows: Vec<AclRow>, kind: Option<&str>) -> Table {
    if let Some(kind) = kind {
        rows.retain(|r| r.kind == kind);
    }
    Table::of(
        "my-acls",
        &rows,
        "You have no ACL entry of this kind: an admin grants them (apogee acl grant).",
        |r| Some(("resource", r.resource.clone())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, resource: &str) -> AclRow {
        AclRow {
            user: "app".into(),
            kind: kind.into(),
            resource: resource.into(),
            actions: "pub,sub".into(),
            decision: "allow".into(),
        }
    }

    #[test]
    fn a_page_lists_the_entries_of_its_kind_and_says_what_needs_an_admin() {
        let rows = || vec![row("topic", "orders*"), row("group", "billing")];
        let topics = entries_table(rows(), Subject::Topics.kind());
        assert_eq!(topics.rows.len(), 1);
        assert_eq!(topics.rows[0].key, Some(("resource", "orders*".into())));
        assert_eq!(entries_table(rows(), Subject::Cluster.kind()).rows.len(), 2);
        let note = Subject::Topics.note("app");
        assert!(note.starts_with("You are signed in as app, who is not an admin"));
        assert!(note.contains("need an admin"), "{note}");
        assert!(!note.to_lowercase().contains("forbidden"), "{note}");
    }
}
