//! Messages between replicas: every request and every reply is signed by its sender's
//! authority key over its kind, the network id, the sender, the recipient, the term, a nonce
//! the reply repeats, and the body's hash, and is refused unless the sender is a member of the
//! set in force. So a message cannot be replayed to another replica, another term or another
//! network, and a reply cannot answer another request.

use serde::{Deserialize, Serialize};
use swarmvm_primitives::Hash32;
use swarmvm_token::AuthoritySet;
use swarmvm_wallet::Wallet;

use crate::error::MessageError;

/// A signed message between replicas (`POST /v1/cluster/raft/{kind}`, and its answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// What it carries: `append`, `vote`, `snapshot`, `propose`, or one of those with
    /// `-reply`.
    pub kind: String,
    /// The network id.
    pub network: String,
    /// The sender's member id.
    pub from: String,
    /// The recipient's member id.
    pub to: String,
    /// The term the body is of (the sender's term for a proposal).
    pub term: u64,
    /// Chosen by the requester; a reply carries the request's.
    pub nonce: u64,
    /// The body, JSON.
    pub body: String,
    /// The sender's signature over [`Envelope::signed_bytes`] (unpadded base64url).
    pub signature: String,
}

/// What a receiver expects of an envelope.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Its kind.
    pub kind: &'a str,
    /// The network id.
    pub network: &'a str,
    /// The receiver's own member id.
    pub me: &'a str,
    /// The nonce (for a reply: the request's).
    pub nonce: Option<u64>,
    /// The sender (for a reply: the member asked).
    pub from: Option<&'a str>,
}

impl Envelope {
    /// Makes and signs a message of `kind` from `key` to member `to`.
    #[allow(clippy::too_many_arguments)]
    pub fn seal(
        key: &Wallet,
        kind: &str,
        network: &str,
        to: &str,
        term: u64,
        nonce: u64,
        body: String,
    ) -> Result<Self, MessageError> {
        let mut envelope = Self {
            kind: kind.to_owned(),
            network: network.to_owned(),
            from: key.id().to_string(),
            to: to.to_owned(),
            term,
            nonce,
            body,
            signature: String::new(),
        };
        envelope.signature = swarmvm_token::sign_message(key, &envelope.signed_bytes())
            .map_err(|e| MessageError::Sign(e.to_string()))?;
        Ok(envelope)
    }

    /// The bytes the signature covers.
    pub fn signed_bytes(&self) -> Vec<u8> {
        format!(
            "swarmvm-replica-message/1\n{}\n{}\n{}\n{}\n{}\n{}\n{}",
            self.kind,
            self.network,
            self.from,
            self.to,
            self.term,
            self.nonce,
            Hash32::digest(self.body.as_bytes()).to_hex()
        )
        .into_bytes()
    }

    /// Checks the envelope as `expect` says and against `set` (the sender a member, the
    /// signature its), then reads the body.
    pub fn open<T: serde::de::DeserializeOwned>(
        &self,
        expect: Expect<'_>,
        set: &AuthoritySet,
    ) -> Result<T, MessageError> {
        if self.network != expect.network {
            return Err(MessageError::OtherNetwork(short(&self.network)));
        }
        if self.to != expect.me {
            return Err(MessageError::OtherRecipient(short(&self.to)));
        }
        if self.kind != expect.kind {
            return Err(MessageError::Kind {
                found: short(&self.kind),
                expected: expect.kind.into(),
            });
        }
        if let Some(from) = expect.from
            && self.from != from
        {
            return Err(MessageError::OtherSender(short(&self.from)));
        }
        if expect.nonce.is_some_and(|n| n != self.nonce) {
            return Err(MessageError::Nonce);
        }
        if !set.contains(&self.from) {
            return Err(MessageError::NotMember(short(&self.from)));
        }
        swarmvm_token::verify_message(set, &self.from, &self.signed_bytes(), &self.signature)
            .map_err(|e| MessageError::Signature(e.to_string()))?;
        serde_json::from_str(&self.body).map_err(|e| MessageError::Body(e.to_string()))
    }
}

fn short(s: &str) -> String {
    swarmvm_primitives::text::shown(s)
}

#[cfg(test)]
mod tests {
    use swarmvm_wallet::Algorithm;

    use super::*;

    #[test]
    fn an_envelope_opens_only_where_it_was_sent_and_as_it_was_signed() {
        let a = Wallet::generate(Algorithm::Ed25519).expect("key");
        let b = Wallet::generate(Algorithm::Ed25519).expect("key");
        let outsider = Wallet::generate(Algorithm::Ed25519).expect("key");
        let set = AuthoritySet::new(vec![a.public_key().clone(), b.public_key().clone()], 2)
            .expect("set");
        let network = set.network_id().to_string();
        let (aid, bid) = (a.id().to_string(), b.id().to_string());
        let sealed =
            Envelope::seal(&a, "vote", &network, &bid, 3, 9, "{\"x\":1}".into()).expect("seal");
        let expect = Expect { kind: "vote", network: &network, me: &bid, nonce: None, from: None };
        let body: serde_json::Value = sealed.open(expect, &set).expect("opens");
        assert_eq!(body["x"], 1);

        let refused = |e: &Envelope, x: Expect<'_>| e.open::<serde_json::Value>(x, &set);
        // To another replica, another network, another kind.
        assert!(matches!(
            refused(&sealed, Expect { me: &aid, ..expect }),
            Err(MessageError::OtherRecipient(_))
        ));
        assert!(matches!(
            refused(&sealed, Expect { network: "other", ..expect }),
            Err(MessageError::OtherNetwork(_))
        ));
        assert!(matches!(
            refused(&sealed, Expect { kind: "append", ..expect }),
            Err(MessageError::Kind { .. })
        ));
        // Any field changed after signing: the signature no longer holds.
        for change in [
            |e: &mut Envelope| e.term = 4,
            |e: &mut Envelope| e.nonce = 10,
            |e: &mut Envelope| e.body = "{\"x\":2}".into(),
        ] {
            let mut changed = sealed.clone();
            change(&mut changed);
            assert!(matches!(refused(&changed, expect), Err(MessageError::Signature(_))));
        }
        // A reply to another request.
        assert!(matches!(
            refused(&sealed, Expect { nonce: Some(8), ..expect }),
            Err(MessageError::Nonce)
        ));
        // An outsider's message, even well signed by its own key.
        let theirs =
            Envelope::seal(&outsider, "vote", &network, &bid, 3, 9, "{}".into()).expect("seal");
        assert!(matches!(refused(&theirs, expect), Err(MessageError::NotMember(_))));
        // A member's name on an outsider's signature.
        let mut forged = theirs;
        forged.from = aid;
        assert!(matches!(refused(&forged, expect), Err(MessageError::Signature(_))));
    }
}
