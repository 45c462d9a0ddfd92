//! The checks of a server's listen addresses, the same for every listener that has one:
//! `shared_config`'s `listen` and `http_listen`, the remoting section's `listen`, the
//! standalone controller's `listen`. Each error names the setting's key.

/// Checks a gRPC listen address: `host:port` with a host (name, IPv4, or IPv6 in brackets)
/// and a port within 0..=65535.
pub fn check_listen(key: &str, addr: &str) -> Result<(), String> {
    match addr.rsplit_once(':') {
        Some((host, port))
            if !host.is_empty()
                && !host.chars().any(char::is_whitespace)
                && port.parse::<u16>().is_ok() =>
        {
            Ok(())
        }
        _ => Err(format!("{key} = {addr:?} is not host:port")),
    }
}

/// Checks an HTTP operations listen address: `ip:port`, or "" for none.
pub fn check_http_listen(key: &str, addr: &str) -> Result<(), String> {
    if addr.is_empty() || addr.parse::<std::net::SocketAddr>().is_ok() {
        return Ok(());
    }
    Err(format!(
        "{key} = {addr:?} is not ip:port (or \"\" for no HTTP endpoint)"
    ))
}
