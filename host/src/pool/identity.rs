//! Who a member is: a secp256k1 key of its own (BIP340 Schnorr). The coordinator's member list
//! names each member's public key; a member proves it holds the key by signing the challenge
//! the coordinator sends on every connection, and its coinbases commit to the key, so that a
//! share can be credited to the member who found it and to nobody else.

use std::path::Path;

use anyhow::Context;
use bitcoin::hashes::{Hash, sha256};
use bitcoin::secp256k1::{Keypair, Message, Secp256k1, XOnlyPublicKey, schnorr};

/// Domain separation for the coinbase commitment.
const COMMITMENT_TAG: &[u8] = b"hearth/pool/member";
/// Domain separation for the authentication signature.
const AUTH_TAG: &[u8] = b"hearth/pool/auth";

/// A member's public identity (its x-only public key), as 64 hex digits in the ledger and on
/// the wire.
pub type MemberId = XOnlyPublicKey;

/// The 20 bytes a member's coinbase scriptSig carries right after the extranonce:
/// `sha256("hearth/pool/member" ‖ x-only key)[..20]`.
pub fn commitment(member: &MemberId) -> [u8; 20] {
    let mut data = Vec::with_capacity(COMMITMENT_TAG.len() + 32);
    data.extend_from_slice(COMMITMENT_TAG);
    data.extend_from_slice(&member.serialize());
    let hash = sha256::Hash::hash(&data);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash.as_byte_array()[..20]);
    out
}

/// What a member signs to log in: the coordinator's fresh challenge, its key and the payout
/// script it asks to be paid to (so that nobody can redirect its payouts by replaying a login).
pub fn auth_message(challenge: &[u8; 32], member: &MemberId, payout_script: &[u8]) -> Message {
    let mut data = Vec::with_capacity(AUTH_TAG.len() + 64 + payout_script.len());
    data.extend_from_slice(AUTH_TAG);
    data.extend_from_slice(challenge);
    data.extend_from_slice(&member.serialize());
    data.extend_from_slice(payout_script);
    Message::from_digest(sha256::Hash::hash(&data).to_byte_array())
}

/// Check a login signature.
pub fn verify_auth(
    challenge: &[u8; 32],
    member: &MemberId,
    payout_script: &[u8],
    signature: &schnorr::Signature,
) -> bool {
    Secp256k1::verification_only()
        .verify_schnorr(
            signature,
            &auth_message(challenge, member, payout_script),
            member,
        )
        .is_ok()
}

/// A member's key pair.
#[derive(Clone)]
pub struct MemberKey {
    keypair: Keypair,
}

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemberKey({})", self.id())
    }
}

impl MemberKey {
    /// From a 32-byte secret key.
    pub fn from_secret(secret: &[u8; 32]) -> anyhow::Result<MemberKey> {
        let keypair = Keypair::from_seckey_slice(&Secp256k1::signing_only(), secret)
            .context("not a valid secp256k1 secret key")?;
        Ok(MemberKey { keypair })
    }

    /// A fresh random key.
    pub fn generate() -> anyhow::Result<MemberKey> {
        // A random 32-byte string is a valid key with overwhelming probability; try again if not.
        for _ in 0..8 {
            let secret: [u8; 32] = rand::random();
            if let Ok(key) = MemberKey::from_secret(&secret) {
                return Ok(key);
            }
        }
        anyhow::bail!("could not draw a valid secp256k1 key")
    }

    /// The public identity.
    pub fn id(&self) -> MemberId {
        self.keypair.x_only_public_key().0
    }

    /// Sign a login.
    pub fn sign_auth(&self, challenge: &[u8; 32], payout_script: &[u8]) -> schnorr::Signature {
        Secp256k1::signing_only().sign_schnorr_no_aux_rand(
            &auth_message(challenge, &self.id(), payout_script),
            &self.keypair,
        )
    }

    /// Read the key from `path` (64 hex digits), or create it there (mode 0600) on first use.
    pub fn load_or_create(path: &Path) -> anyhow::Result<MemberKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let bytes: [u8; 32] = hex::decode(text.trim())
                    .ok()
                    .and_then(|b| b.try_into().ok())
                    .with_context(|| {
                        format!(
                            "{}: a pool member key is 64 hex digits; delete the file to have a new key made (and give the coordinator the new public key)",
                            path.display()
                        )
                    })?;
                MemberKey::from_secret(&bytes)
                    .with_context(|| format!("{}: not a valid key", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MemberKey::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .with_context(|| format!("cannot create {}", dir.display()))?;
                }
                write_private(path, &hex::encode(key.keypair.secret_bytes()))?;
                tracing::info!(path = %path.display(), member = %key.id(),
                    "created this member's pool key; give the coordinator its public key");
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(format!("{text}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_signed_with_the_key_verifies_and_nothing_else_does() {
        let alice = MemberKey::from_secret(&[1; 32]).unwrap();
        let bob = MemberKey::from_secret(&[2; 32]).unwrap();
        let challenge = [7u8; 32];
        let script = [0x00, 0x14, 0xAA];
        let sig = alice.sign_auth(&challenge, &script);
        assert!(verify_auth(&challenge, &alice.id(), &script, &sig));
        assert!(
            !verify_auth(&challenge, &bob.id(), &script, &sig),
            "someone else's key"
        );
        assert!(
            !verify_auth(&[8; 32], &alice.id(), &script, &sig),
            "a replayed login"
        );
        assert!(
            !verify_auth(&challenge, &alice.id(), &[0x51], &sig),
            "another payout"
        );
        assert_ne!(commitment(&alice.id()), commitment(&bob.id()));
    }

    #[test]
    fn the_key_file_is_made_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool-key");
        let first = MemberKey::load_or_create(&path).unwrap();
        let again = MemberKey::load_or_create(&path).unwrap();
        assert_eq!(first.id(), again.id());
        std::fs::write(&path, "not hex").unwrap();
        let err = MemberKey::load_or_create(&path).unwrap_err();
        assert!(format!("{err:#}").contains("64 hex digits"), "{err:#}");
    }
}
