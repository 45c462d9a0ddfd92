//! RocketMQ's ACL signature on remoting requests (its `AclClientRPCHook` on the client,
//! `PlainAccessValidator` on the broker): a signed request carries the extension fields
//! `AccessKey` and `Signature`, where `Signature` is the base64 HMAC-SHA1, keyed with the
//! access key's secret, of the values of every other extension field sorted by key and
//! concatenated, followed by the body.
//!
//! With `security.authentication` on, [`RemotingAuth::admit`] admits a request as its
//! access key's [`Identity`] with the ACL entries of the moment, or refuses it with the
//! remark of a NO_PERMISSION answer; without it every request is admitted as
//! [`Caller::default`]. A secret or a signature is never logged.

use super::Caller;
use crate::auth::guard::AuthLayer;
use apogee_proto::auth::{Directory, Identity};
use apogee_proto::remoting::signature::{content_mac, UNIQUE_KEY_QUERY};
pub use apogee_proto::remoting::signature::{sign, ACCESS_KEY, SIGNATURE};
use apogee_proto::remoting::RemotingCommand;
use base64::Engine;
use hmac::Mac;

/// What remoting requests are checked against (a server's users, when authentication is on).
#[derive(Clone, Default)]
pub struct RemotingAuth {
    directory: Option<Directory>,
}

impl RemotingAuth {
    /// The users and ACLs `auth` checks gRPC calls against (none when it is off).
    pub fn new(auth: &AuthLayer) -> RemotingAuth {
        RemotingAuth {
            directory: auth.directory(),
        }
    }

    /// Checks against `directory` (`None`: authentication off).
    pub fn with_directory(directory: Option<Directory>) -> RemotingAuth {
        RemotingAuth { directory }
    }

    /// Who `request` is from, or why it is refused (the remark of its NO_PERMISSION answer).
    pub fn admit(&self, request: &RemotingCommand) -> Result<Caller, String> {
        let Some(directory) = &self.directory else {
            return Ok(Caller::default());
        };
        let Some(access_key) = request.ext(ACCESS_KEY) else {
            return Err("authentication is required: no AccessKey in the request".into());
        };
        let Some(signature) = request.ext(SIGNATURE) else {
            return Err(format!("no Signature in the request of {access_key}"));
        };
        let Some((secret, role)) = directory.lookup(access_key) else {
            return Err(format!("unknown AccessKey {access_key}"));
        };
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature)
            .map_err(|_| format!("the Signature of {access_key} is not base64"))?;
        let verifies = |skip_unique: bool| {
            content_mac(&secret, request, skip_unique)
                .verify_slice(&signature)
                .is_ok()
        };
        let valid = verifies(false) || (request.ext(UNIQUE_KEY_QUERY).is_some() && verifies(true));
        if !valid {
            return Err(format!("the Signature of {access_key} does not match"));
        }
        Ok(Caller {
            identity: Some(Identity::User {
                access_key: access_key.to_string(),
                role,
            }),
            acls: Some(directory.acls()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apogee_proto::auth::{Credentials, Role};

    fn request() -> RemotingCommand {
        RemotingCommand::request(10)
            .with_ext("z", "last")
            .with_ext("a", "first")
            .with_ext(ACCESS_KEY, "ak")
            .with_ext("SecurityToken", "token")
            .with_body(&b"body"[..])
    }

    fn directory() -> Directory {
        Directory::with_admin(&Credentials::new("ak", "secret-key-1").unwrap())
    }

    #[test]
    fn a_signed_request_is_admitted_as_its_access_key() {
        let auth = RemotingAuth::with_directory(Some(directory()));
        let mut signed = request();
        let signature = sign("secret-key-1", &signed);
        signed = signed.with_ext(SIGNATURE, signature);
        let caller = auth.admit(&signed).unwrap();
        assert_eq!(
            caller.identity,
            Some(Identity::User {
                access_key: "ak".into(),
                role: Role::Admin
            })
        );
        assert!(caller.acls.is_some());
        // A changed body, a wrong secret, an unknown key, no signature: refused.
        let tampered = signed.clone().with_body(&b"other"[..]);
        assert!(auth
            .admit(&tampered)
            .unwrap_err()
            .contains("does not match"));
        let wrong = request().with_ext(SIGNATURE, sign("guess", &request()));
        assert!(auth.admit(&wrong).unwrap_err().contains("does not match"));
        let stranger = signed.clone().with_ext(ACCESS_KEY, "nobody");
        assert!(auth
            .admit(&stranger)
            .unwrap_err()
            .contains("unknown AccessKey"));
        assert!(auth.admit(&request()).unwrap_err().contains("no Signature"));
        let anonymous = RemotingCommand::request(10);
        assert!(auth.admit(&anonymous).unwrap_err().contains("no AccessKey"));
        // No secret in any remark.
        for refused in [&tampered, &wrong, &stranger] {
            assert!(!auth.admit(refused).unwrap_err().contains("secret-key-1"));
        }
    }

    #[test]
    fn a_unique_key_query_verifies_with_or_without_its_flag_signed() {
        let auth = RemotingAuth::with_directory(Some(directory()));
        let base = RemotingCommand::request(12).with_ext(ACCESS_KEY, "ak");
        let signed_without = sign("secret-key-1", &base);
        let request = base
            .with_ext(UNIQUE_KEY_QUERY, "true")
            .with_ext(SIGNATURE, signed_without);
        assert!(auth.admit(&request).is_ok());
    }

    #[test]
    fn without_authentication_everyone_is_the_default_caller() {
        let caller = RemotingAuth::default()
            .admit(&RemotingCommand::request(10))
            .unwrap();
        assert!(caller.identity.is_none() && caller.acls.is_none());
    }
}
