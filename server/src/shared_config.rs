//! The settings both servers' configs have, validated one way for both: `listen` (host:port,
//! a host name or an IP address; port 0 picks a free one), `http_listen` (ip:port, or "" for
//! no operations endpoint), whether either is reachable from other hosts without
//! credentials ([`SecuritySection::check_exposure`]), the rest of `[security]`, `[tls]`,
//! `[telemetry]` and `log_level`. Each server's own `validate` calls
//! [`SharedSettings::validate`] and then checks its own keys.

use crate::config_file::env_var_prefix;
pub use crate::listen_addr::{check_http_listen, check_listen};
use crate::remoting::RemotingSection;
use crate::security::SecuritySection;
use crate::settings::TelemetrySection;
use crate::tls_config::TlsSection;

/// The settings of one server's config that both servers share.
pub struct SharedSettings<'a> {
    /// The server's environment prefix (`NAMESERVER`, `BROKER`): errors name its variables.
    pub env_prefix: &'a str,
    pub listen: &'a str,
    pub http_listen: &'a str,
    pub log_level: Option<&'a str>,
    pub security: &'a SecuritySection,
    pub tls: &'a TlsSection,
    pub remoting: &'a RemotingSection,
    pub telemetry: &'a TelemetrySection,
}

impl SharedSettings<'_> {
    /// Checks them all; the error names the setting at fault (and the file or variable
    /// that would allow an exposed listener).
    pub fn validate(&self) -> Result<(), String> {
        check_listen("listen", self.listen)?;
        check_http_listen("http_listen", self.http_listen)?;
        let allow = format!(
            "{}SECURITY__ALLOW_ANONYMOUS",
            env_var_prefix(self.env_prefix)
        );
        self.remoting.validate()?;
        let remoting_listen = self.remoting.listen.as_str();
        for (key, addr) in [
            ("listen", self.listen),
            ("http_listen", self.http_listen),
            ("remoting.listen", remoting_listen),
        ] {
            self.security.check_exposure(key, addr, &allow)?;
        }
        self.security.cluster_secret()?;
        self.security.check_authentication()?;
        self.tls.validate()?;
        self.telemetry.client_metrics()?;
        if self.log_level.is_some_and(|l| l.trim().is_empty()) {
            return Err("log_level must not be empty when set".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared<'a>(
        listen: &'a str,
        http_listen: &'a str,
        security: &'a SecuritySection,
        tls: &'a TlsSection,
    ) -> SharedSettings<'a> {
        SharedSettings {
            env_prefix: "BROKER",
            listen,
            http_listen,
            log_level: None,
            security,
            tls,
            remoting: &REMOTING,
            telemetry: &TELEMETRY,
        }
    }

    static REMOTING: std::sync::LazyLock<RemotingSection> =
        std::sync::LazyLock::new(RemotingSection::default);
    static TELEMETRY: TelemetrySection = TelemetrySection {
        client_metrics_endpoint: String::new(),
    };

    #[test]
    fn listen_is_host_colon_port_for_both_servers() {
        for ok in [
            "127.0.0.1:9876",
            "127.0.0.1:0",
            "localhost:10911",
            "[::1]:9876",
            "ns1.example:9876",
        ] {
            check_listen("listen", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "nowhere",
            ":9876",
            "host:",
            "host:99999",
            "host:port",
            "a b:1",
        ] {
            let err = check_listen("listen", bad).unwrap_err();
            assert!(
                err.starts_with("listen = ") && err.contains("host:port"),
                "{err}"
            );
        }
    }

    #[test]
    fn http_listen_is_an_ip_and_port_or_nothing() {
        for ok in ["", "127.0.0.1:5556", "[::1]:0"] {
            check_http_listen("http_listen", ok).unwrap();
        }
        for bad in ["localhost:5556", "5556", "127.0.0.1"] {
            let err = check_http_listen("http_listen", bad).unwrap_err();
            assert!(err.contains("is not ip:port"), "{err}");
        }
    }

    #[test]
    fn exposure_names_the_servers_own_variable() {
        let (security, tls) = (SecuritySection::default(), TlsSection::default());
        let err = shared("0.0.0.0:10911", "", &security, &tls)
            .validate()
            .unwrap_err();
        assert!(
            err.contains("APOGEE_BROKER_SECURITY__ALLOW_ANONYMOUS"),
            "{err}"
        );
        let err = shared("127.0.0.1:10911", "0.0.0.0:5557", &security, &tls)
            .validate()
            .unwrap_err();
        assert!(err.starts_with("http_listen = "), "{err}");
        shared("localhost:10911", "127.0.0.1:5557", &security, &tls)
            .validate()
            .unwrap();
    }

    #[test]
    fn an_exposed_remoting_listener_is_refused_like_the_grpc_one() {
        let (security, tls) = (SecuritySection::default(), TlsSection::default());
        let remoting = RemotingSection {
            listen: "0.0.0.0:10912".into(),
            ..RemotingSection::default()
        };
        let mut s = shared("127.0.0.1:10911", "", &security, &tls);
        s.remoting = &remoting;
        let err = s.validate().unwrap_err();
        assert!(err.starts_with("remoting.listen = "), "{err}");
        let loopback = RemotingSection {
            listen: "127.0.0.1:10912".into(),
            ..RemotingSection::default()
        };
        s.remoting = &loopback;
        s.validate().unwrap();
    }

    #[test]
    fn a_blank_log_level_is_refused() {
        let (security, tls) = (SecuritySection::default(), TlsSection::default());
        let mut s = shared("127.0.0.1:1", "", &security, &tls);
        s.log_level = Some(" ");
        assert!(s.validate().unwrap_err().contains("log_level"));
        s.log_level = Some("debug");
        s.validate().unwrap();
    }
}
