//! What a sequencer admits into its next bundle before it makes it: registration tokens it
//! may queue ([`admit_registration`]), and the parts of a folder signed elsewhere and sent
//! apart, checked against its verified manifest before anything is written
//! ([`check_parts`]).
//!
//! These are the bundle's own rules, checked early: a bundle made of what passes them is
//! then verified as any other ([`verify_bundle`](crate::verify_bundle)).

use std::collections::BTreeMap;

use swarmvm_primitives::text::shown;
use swarmvm_primitives::{Classify, ErrorClass};
use swarmvm_token::{
    AuthoritySet, TimeCheck, VerifiedManifest, VerifyError, module_file, module_hash,
    verify_registration,
};
use swarmvm_vm::{HANDLER_NAMES, Hash32, StateError};

use crate::layout::{CONTRACTS_FILE, TOKENS_FILE, text_file_size};
use crate::verify::ChainView;

/// A registration token a sequencer may queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Its replay key ([`Registration::replay_key`](swarmvm_token::Registration::replay_key)),
    /// under which the chain remembers it once applied.
    pub replay_key: String,
    /// The modules it binds actions to
    /// ([`Registration::modules`](swarmvm_token::Registration::modules)): a bundle that
    /// carries it must carry them, or an earlier one of the chain.
    pub modules: Vec<Hash32>,
}

/// Why a registration token is not admitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdmitError {
    /// It does not verify: not signed by a member of the set in force, out of its time, or
    /// breaking a rule of registration tokens.
    #[error(transparent)]
    Invalid(VerifyError),
    /// It was applied before (its replay key, shown).
    #[error("it was applied already ({})", shown(.0))]
    Replayed(String),
    /// The chain could not be read.
    #[error(transparent)]
    Storage(#[from] StateError),
}

/// The chain not read is a failure; everything else refuses the token.
impl Classify for AdmitError {
    fn class(&self) -> ErrorClass {
        match self {
            Self::Invalid(e) => e.class(),
            Self::Replayed(_) => ErrorClass::Refused,
            Self::Storage(e) => e.class(),
        }
    }
}

/// Admits a registration token into the next bundle of the chain `view` shows: it must verify
/// at `now` signed by a member of `set` (the authority set in force), and not have been
/// applied before. Returns its replay key and the modules it names.
pub fn admit_registration(
    view: &dyn ChainView,
    set: &AuthoritySet,
    token: &str,
    now: u64,
) -> Result<Admitted, AdmitError> {
    let reg = verify_registration(token, set.trust(), TimeCheck::at(now), HANDLER_NAMES)
        .map_err(AdmitError::Invalid)?;
    let replay_key = reg.replay_key();
    if view.token_used(&replay_key)? {
        return Err(AdmitError::Replayed(replay_key));
    }
    Ok(Admitted { modules: reg.modules(), replay_key })
}

/// Why the parts of a folder sent apart are not the files its verified manifest lists.
/// Messages name what was sent as the sender sent it: items a line, modules by hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartsError {
    /// A text file whose lines, one item a line, make another size than the manifest's.
    #[error(
        "the folder's {file} would be {sent} bytes (one item a line), its manifest lists {declared}"
    )]
    TextSize {
        /// [`TOKENS_FILE`] or [`CONTRACTS_FILE`].
        file: &'static str,
        /// Its size as sent.
        sent: u64,
        /// The size the manifest lists (0 when it lists none).
        declared: u64,
    },
    /// A module of a size no module of the manifest has (found before it is hashed).
    #[error("a module of {size} bytes was sent that the manifest does not list")]
    UnlistedSize {
        /// Its size.
        size: u64,
    },
    /// A module the manifest does not list.
    #[error("module {} was sent but the manifest does not list it", shown(.0))]
    Unlisted(String),
    /// A module the manifest lists that was not sent.
    #[error("the manifest lists {}, which was not sent", shown(.0))]
    NotSent(String),
}

/// Every part that is not the manifest's refuses the folder.
impl Classify for PartsError {
    fn class(&self) -> ErrorClass {
        ErrorClass::Refused
    }
}

/// Refuses registration tokens or contracts that would not make the files `manifest` lists:
/// each file, one item a line, must be of the listed size (their hashes are checked when the
/// folder is opened). Nothing is hashed.
pub fn check_text_parts(
    manifest: &VerifiedManifest,
    tokens: &[String],
    contracts: &[String],
) -> Result<(), PartsError> {
    for (file, lines) in [(TOKENS_FILE, tokens), (CONTRACTS_FILE, contracts)] {
        let sent = text_file_size(lines);
        let declared = manifest.files.get(file).map_or(0, |d| d.size);
        if sent != declared {
            return Err(PartsError::TextSize { file, sent, declared });
        }
    }
    Ok(())
}

/// Refuses modules that are not exactly those `manifest` lists: first any module of a size
/// the manifest lists for none (before it is hashed), then one it does not list, then one it
/// lists that is missing.
pub fn check_module_parts(
    manifest: &VerifiedManifest,
    modules: &[Vec<u8>],
) -> Result<(), PartsError> {
    let listed: BTreeMap<&str, u64> = manifest
        .files
        .iter()
        .filter(|(name, _)| module_hash(name).is_some())
        .map(|(name, d)| (name.as_str(), d.size))
        .collect();
    if let Some(m) = modules.iter().find(|m| !listed.values().any(|size| *size == m.len() as u64)) {
        return Err(PartsError::UnlistedSize { size: m.len() as u64 });
    }
    let sent: BTreeMap<String, u64> =
        modules.iter().map(|m| (module_file(&Hash32::digest(m)), m.len() as u64)).collect();
    if let Some(name) = sent.keys().find(|name| !listed.contains_key(name.as_str())) {
        return Err(PartsError::Unlisted(name.clone()));
    }
    if let Some(name) = listed.keys().find(|name| !sent.contains_key(**name)) {
        return Err(PartsError::NotSent((*name).to_owned()));
    }
    Ok(())
}

/// Refuses the parts of a folder (its registration tokens and contracts, one item a line, and
/// its modules) that are not the files its verified `manifest` lists:
/// [`check_text_parts`], then [`check_module_parts`].
pub fn check_parts(
    manifest: &VerifiedManifest,
    tokens: &[String],
    contracts: &[String],
    modules: &[Vec<u8>],
) -> Result<(), PartsError> {
    check_text_parts(manifest, tokens, contracts)?;
    check_module_parts(manifest, modules)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use swarmvm_primitives::{BundleId, Rules};
    use swarmvm_test_support::net::{TestNet, student};
    use swarmvm_token::{FileDigest, IssueTime, Operation, Signer, issue_operations};
    use swarmvm_wallet::PublicKey;

    use super::*;
    use crate::layout::text_file;
    use crate::verify::BundlePosition;
    use crate::{CreateOptions, create_bundle, open_bundle, write_folder};

    /// A chain that applied the tokens of `used` (or cannot be read, with `broken`).
    #[derive(Default)]
    struct Chain {
        used: BTreeSet<String>,
        broken: bool,
    }

    impl ChainView for Chain {
        fn network(&self) -> Option<String> {
            None
        }
        fn last_bundle(&self) -> Option<BundlePosition> {
            None
        }
        fn is_local(&self) -> bool {
            false
        }
        fn applied(&self, _: u64) -> Result<Option<(BundleId, String)>, StateError> {
            Ok(None)
        }
        fn wallet(&self, _: &str) -> Result<Option<PublicKey>, StateError> {
            Ok(None)
        }
        fn has_module(&self, _: &Hash32) -> Result<bool, StateError> {
            Ok(false)
        }
        fn authorities(&self) -> Result<Option<AuthoritySet>, StateError> {
            Ok(None)
        }
        fn token_used(&self, key: &str) -> Result<bool, StateError> {
            if self.broken {
                return Err(StateError::storage(std::io::Error::other("disk gone")));
            }
            Ok(self.used.contains(key))
        }
    }

    const MODULE: &str = r#"(module (memory (export "memory") 1)
        (func (export "run") (result i32) (i32.const 0)))"#;

    #[test]
    fn a_registration_is_admitted_once_signed_by_the_set_in_force_and_not_applied() {
        let net = TestNet::new(1);
        let set = net.network.genesis();
        let now = net.issued_at;
        let chain = Chain::default();
        let admitted = admit_registration(&chain, set, &net.tokens[1], now).unwrap();
        assert!(admitted.modules.is_empty(), "a wallets token names no module");

        let used = Chain { used: BTreeSet::from([admitted.replay_key.clone()]), broken: false };
        let e = admit_registration(&used, set, &net.tokens[1], now).unwrap_err();
        assert!(matches!(e, AdmitError::Replayed(_)), "{e}");
        let shown_key = shown(&admitted.replay_key);
        assert_eq!(e.to_string(), format!("it was applied already ({shown_key})"));
        assert_eq!(e.class(), ErrorClass::Refused);

        let broken = Chain { broken: true, ..Chain::default() };
        let e = admit_registration(&broken, set, &net.tokens[1], now).unwrap_err();
        assert!(matches!(e, AdmitError::Storage(_)), "{e}");
        assert_eq!(e.to_string(), "storage failure: storage failure: disk gone");
        assert_eq!(e.class(), ErrorClass::Failed);

        let stranger = TestNet::new(1);
        let e = admit_registration(&chain, set, &stranger.tokens[1], now).unwrap_err();
        let AdmitError::Invalid(inner) = &e else { panic!("{e}") };
        assert_eq!(e.to_string(), inner.to_string(), "the verification's own words");
        assert_eq!(e.class(), ErrorClass::Refused);
    }

    #[test]
    fn an_operations_token_names_the_modules_it_binds() {
        let net = TestNet::new(1);
        let hash =
            swarmvm_wasm::check_module(&swarmvm_wasm::module_bytes(MODULE.as_bytes()).unwrap())
                .unwrap()
                .hash;
        let ops = BTreeMap::from([
            ("a_wasm".to_owned(), Operation::wasm(hash)),
            ("register_student".to_owned(), Operation::from("register_student")),
        ]);
        let time = IssueTime { now: net.issued_at, ttl: 86_400 };
        let token =
            issue_operations(&Signer::Wallet(&net.authority), &ops, HANDLER_NAMES, time).unwrap();
        let admitted =
            admit_registration(&Chain::default(), net.network.genesis(), &token, net.issued_at)
                .unwrap();
        assert_eq!(admitted.modules, [hash]);
    }

    fn manifest_of(files: BTreeMap<String, FileDigest>) -> VerifiedManifest {
        VerifiedManifest {
            id: BundleId::of_payload(b"{}"),
            issuer: "a".into(),
            signers: vec!["a".into()],
            issued_at: 1,
            seq: 1,
            parent: None,
            parent_info_hash: None,
            files,
            audience: None,
            authority_set: None,
            verified_against: String::new(),
            rules: Rules::CURRENT,
        }
    }

    fn digest_of(bytes: &[u8]) -> FileDigest {
        FileDigest { size: bytes.len() as u64, sha256: Hash32::digest(bytes) }
    }

    #[test]
    fn parts_must_be_the_files_the_manifest_lists() {
        let tokens = vec!["t.o.k".to_owned()];
        let contracts = vec!["c.o.n".to_owned(), "t.r.a".to_owned()];
        let module = swarmvm_wasm::module_bytes(MODULE.as_bytes()).unwrap();
        let module_name = module_file(&Hash32::digest(&module));
        let manifest = manifest_of(BTreeMap::from([
            (TOKENS_FILE.to_owned(), digest_of(text_file(&tokens).as_bytes())),
            (CONTRACTS_FILE.to_owned(), digest_of(text_file(&contracts).as_bytes())),
            (module_name.clone(), digest_of(&module)),
        ]));
        let modules = vec![module.clone()];
        check_parts(&manifest, &tokens, &contracts, &modules).unwrap();

        let e = check_text_parts(&manifest, &tokens, &contracts[..1]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the folder's contracts.jsonl would be 6 bytes (one item a line), its manifest lists 12"
        );
        let e = check_text_parts(&manifest, &[], &contracts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the folder's registration_tokens.txt would be 0 bytes (one item a line), its manifest lists 6"
        );
        assert_eq!(e.class(), ErrorClass::Refused);

        let e = check_module_parts(&manifest, &[vec![0; 3]]).unwrap_err();
        assert_eq!(e.to_string(), "a module of 3 bytes was sent that the manifest does not list");
        let mut other = module;
        *other.last_mut().unwrap() ^= 1;
        let e = check_module_parts(&manifest, &[other.clone()]).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "module {} was sent but the manifest does not list it",
                shown(&module_file(&Hash32::digest(&other)))
            )
        );
        let e = check_parts(&manifest, &tokens, &contracts, &[]).unwrap_err();
        let shown_name = shown(&module_name);
        assert_eq!(e.to_string(), format!("the manifest lists {shown_name}, which was not sent"));
    }

    #[test]
    fn a_written_folder_signed_opens_with_the_parts_it_was_written_from() {
        let net = TestNet::new(1);
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("bundle-1");
        let contracts = vec![net.contract(0, 1, &[student("S1")])];
        let modules = vec![swarmvm_wasm::module_bytes(MODULE.as_bytes()).unwrap()];
        write_folder(&folder, &net.tokens, &contracts, &modules).unwrap();
        let options = CreateOptions { now: net.issued_at, ..CreateOptions::default() };
        create_bundle(&folder, &[&net.authority], &net.network, &options).unwrap();
        let opened = open_bundle(&folder, net.network.id(), net.network.genesis()).unwrap();
        assert_eq!((&opened.registrations, &opened.contracts), (&net.tokens, &contracts));
        assert_eq!(opened.modules.len(), 1);
        check_parts(&opened.manifest, &net.tokens, &contracts, &modules).unwrap();
    }

    #[test]
    fn the_files_of_parts_are_those_of_the_folder_written_from_them() {
        let net = TestNet::new(1);
        let dir = tempfile::tempdir().unwrap();
        let contracts = vec![net.contract(0, 1, &[student("S1")]), net.contract(0, 2, &[])];
        let module = swarmvm_wasm::module_bytes(MODULE.as_bytes()).unwrap();
        let none: &[String] = &[];
        let cases = [
            (&net.tokens[..], &contracts[..], vec![module.clone()]),
            (&net.tokens, &contracts, vec![module.clone(), module]),
            (none, &contracts, Vec::new()),
            (none, none, Vec::new()),
        ];
        for (i, (tokens, contracts, modules)) in cases.iter().enumerate() {
            let folder = dir.path().join(format!("bundle-{i}"));
            write_folder(&folder, tokens, contracts, modules).unwrap();
            let written = crate::folder_files(&folder).unwrap();
            assert_eq!(crate::files_of(tokens, contracts, modules).unwrap(), written, "case {i}");
            assert_eq!(written.len(), 2 + usize::from(!modules.is_empty()), "case {i}");
        }
        // A module the ABI refuses is refused by both, for the same reason.
        let bad = b"\0asm\x01\0\0\0".to_vec();
        let folder = dir.path().join("bad");
        write_folder(&folder, &[], &[], std::slice::from_ref(&bad)).unwrap();
        let on_disk = crate::folder_files(&folder).unwrap_err().to_string();
        let in_memory = crate::files_of::<String, _>(&[], &[], &[bad]).unwrap_err().to_string();
        assert!(in_memory.starts_with("module modules/"), "{in_memory}");
        assert_eq!(in_memory, on_disk);
    }
}
