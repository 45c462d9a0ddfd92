//! Cluster-internal trust: a broker proves it belongs to the cluster with a
//! shared secret when it registers with (heartbeats to, unregisters from) a
//! NameServer, and a slave when it opens its master's replication stream.
//!
//! The proof is the `x-apogee-cluster-auth` header: `<unix ms>.<hex
//! HMAC-SHA256 of the unix ms with the secret>`. A server that has a secret
//! refuses a call without a valid proof, or with a time more than
//! [`MAX_SKEW`] from its own clock, with UNAUTHENTICATED and logs it with the
//! peer's address (apogee-server's `cluster_proof`). The secret itself never travels and is
//! never logged.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The request header carrying the proof.
pub const HEADER: &str = "x-apogee-cluster-auth";
/// How far a proof's time may be from the receiver's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// The shortest secret accepted.
pub const MIN_SECRET_BYTES: usize = 16;

/// The cluster's shared secret.
#[derive(Clone)]
pub struct ClusterSecret(Arc<[u8]>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

fn mac(secret: &[u8], time: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(time.as_bytes());
    mac
}

impl ClusterSecret {
    /// A secret from its bytes (at least [`MIN_SECRET_BYTES`]).
    pub fn new(secret: &[u8]) -> Result<ClusterSecret, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the cluster secret has {} bytes; it needs at least {MIN_SECRET_BYTES}",
                secret.len()
            ));
        }
        Ok(ClusterSecret(secret.into()))
    }

    /// Reads the secret from a file (surrounding whitespace ignored); errors name the file.
    pub fn from_file(path: &Path) -> Result<ClusterSecret, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("cluster secret file {}: {e}", path.display()))?;
        let trimmed = text.trim_ascii();
        ClusterSecret::new(trimmed).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A 32-byte key for `label`'s use, derived from the secret (HMAC-SHA256 of the label keyed
    /// with the secret): each use gets its own key, and none reveals the secret.
    pub fn derive_key(&self, label: &str) -> [u8; 32] {
        mac(&self.0, label).finalize().into_bytes().into()
    }

    /// The proof for a call made at `now_ms`.
    pub fn proof(&self, now_ms: i64) -> String {
        let time = now_ms.to_string();
        let sig = mac(&self.0, &time).finalize().into_bytes();
        format!("{time}.{}", hex::encode(sig))
    }

    /// Adds the proof to an outgoing request.
    pub fn sign<T>(&self, request: &mut tonic::Request<T>) {
        let proof = self.proof(crate::time::now_ms());
        let value = proof
            .parse()
            .expect("digits, a dot and hex are a valid header value");
        request.metadata_mut().insert(HEADER, value);
    }

    /// Checks a proof received at `now_ms`.
    pub fn verify(&self, proof: Option<&str>, now_ms: i64) -> Result<(), String> {
        let proof = proof.ok_or("no cluster proof (the caller has no cluster secret)")?;
        let (time, sig) = proof.split_once('.').ok_or("a malformed cluster proof")?;
        let at: i64 = time.parse().map_err(|_| "a malformed cluster proof")?;
        let sig = hex::decode(sig).map_err(|_| "a malformed cluster proof")?;
        mac(&self.0, time)
            .verify_slice(&sig)
            .map_err(|_| "a cluster proof made with another secret")?;
        let skew = now_ms.abs_diff(at);
        if skew > MAX_SKEW.as_millis() as u64 {
            return Err(format!(
                "a cluster proof {} s away from this server's clock (at most {} s)",
                skew / 1000,
                MAX_SKEW.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_with_the_same_secret_only_and_within_the_skew() {
        let s = ClusterSecret::new(b"0123456789abcdef-secret").unwrap();
        let now = 1_800_000_000_000;
        let proof = s.proof(now);
        assert!(s.verify(Some(&proof), now).is_ok());
        assert!(s.verify(Some(&proof), now + 299_000).is_ok());
        let stale = s.verify(Some(&proof), now + 301_000).unwrap_err();
        assert!(stale.contains("away from this server's clock"), "{stale}");
        let other = ClusterSecret::new(b"another-secret-of-16").unwrap();
        assert!(other
            .verify(Some(&proof), now)
            .unwrap_err()
            .contains("another secret"));
        assert!(s
            .verify(None, now)
            .unwrap_err()
            .contains("no cluster proof"));
        assert!(s.verify(Some("junk"), now).is_err());
        // The time is signed: changing it breaks the proof.
        let (_, sig) = proof.split_once('.').unwrap();
        assert!(s.verify(Some(&format!("{}.{sig}", now + 1)), now).is_err());
    }

    #[test]
    fn short_secrets_are_refused_and_files_are_trimmed() {
        assert!(ClusterSecret::new(b"short").is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "  0123456789abcdef-secret\n").unwrap();
        let from_file = ClusterSecret::from_file(&path).unwrap();
        let direct = ClusterSecret::new(b"0123456789abcdef-secret").unwrap();
        assert!(direct.verify(Some(&from_file.proof(5)), 5).is_ok());
        let missing = ClusterSecret::from_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.contains("nope"), "{missing}");
        assert_eq!(format!("{direct:?}"), "ClusterSecret(..)");
    }
}
