//! RocketMQ's ACL signature on remoting requests (its `AclClientRPCHook`): a signed request
//! carries the extension fields [`ACCESS_KEY`] and [`SIGNATURE`], where `Signature` is the
//! base64 HMAC-SHA1, keyed with the access key's secret, of the values of every other
//! extension field sorted by key and concatenated, followed by the body. Clients sign with
//! [`sign_request`]; servers verify with [`content_mac`].

use super::RemotingCommand;
use hmac::{Hmac, Mac};

/// The extension field naming the signer.
pub const ACCESS_KEY: &str = "AccessKey";
/// The extension field carrying the signature.
pub const SIGNATURE: &str = "Signature";
/// The query-by-unique-key flag, which RocketMQ's broker leaves out of the signed content.
pub const UNIQUE_KEY_QUERY: &str = "_UNIQUE_KEY_QUERY";

/// HMAC-SHA1, the signature's MAC.
pub type HmacSha1 = Hmac<sha1::Sha1>;

/// The HMAC of `request`'s signed content: the extension fields' values but `Signature`'s
/// (and `_UNIQUE_KEY_QUERY`'s with `skip_unique`), by key, then the body.
pub fn content_mac(secret: &[u8], request: &RemotingCommand, skip_unique: bool) -> HmacSha1 {
    let mut mac = HmacSha1::new_from_slice(secret).expect("HMAC takes a key of any length");
    // `ext_fields` is in name order (byte order, as Java's TreeMap of Strings for ASCII).
    for (key, value) in request.ext_fields.iter() {
        if key == SIGNATURE || (skip_unique && key == UNIQUE_KEY_QUERY) {
            continue;
        }
        mac.update(value.as_bytes());
    }
    mac.update(&request.body);
    mac
}

/// The signature a client with `secret` puts on `request` (its other fields, `AccessKey`
/// included, already set).
pub fn sign(secret: &str, request: &RemotingCommand) -> String {
    use base64::Engine;
    let mac = content_mac(secret.as_bytes(), request, false);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `request` as `access_key` with `secret`: sets `AccessKey`, then `Signature`.
pub fn sign_request(request: &mut RemotingCommand, access_key: &str, secret: &str) {
    request.ext_fields.insert(ACCESS_KEY, access_key);
    let signature = sign(secret, request);
    request.ext_fields.insert(SIGNATURE, signature);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RemotingCommand {
        RemotingCommand::request(10)
            .with_ext("z", "last")
            .with_ext("a", "first")
            .with_ext(ACCESS_KEY, "ak")
            .with_ext("SecurityToken", "token")
            .with_body(&b"body"[..])
    }

    #[test]
    fn the_signature_is_rocketmqs() {
        // The vector of RocketMQ's Rust client (its ACL hook test): sorted values
        // "ak" "token" "first" "last", then the body, under the secret "secret".
        assert_eq!(sign("secret", &request()), "wuJkFDNRMKY6aFXTDwT/vg0UC8M=");
        // Its signer's vector: HMAC-SHA1 of "alicetopic-a".
        let plain = RemotingCommand::request(10)
            .with_ext("a", "alice")
            .with_ext("b", "topic-a");
        assert_eq!(sign("secret", &plain), "3yomro7y0WqWcbV+9tQa4av5w3Q=");
        // An old signature is not part of what is signed.
        let resigned = request().with_ext(SIGNATURE, "stale");
        assert_eq!(sign("secret", &resigned), "wuJkFDNRMKY6aFXTDwT/vg0UC8M=");
    }

    #[test]
    fn a_signed_request_carries_its_access_key_and_a_signature_over_it() {
        let mut signed = RemotingCommand::request(10)
            .with_ext("SecurityToken", "token")
            .with_ext("z", "last")
            .with_ext("a", "first")
            .with_body(&b"body"[..]);
        sign_request(&mut signed, "ak", "secret");
        assert_eq!(signed.ext(ACCESS_KEY), Some("ak"));
        assert_eq!(signed.ext(SIGNATURE), Some("wuJkFDNRMKY6aFXTDwT/vg0UC8M="));
    }
}
