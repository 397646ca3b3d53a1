//! Flag groups shared by several commands.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use swarmvm_token::{DEFAULT_HS256_ISSUER, Hs256Key, Network, TrustStore};
use swarmvm_wallet::{KeyMaterial, Wallet, read_key_file, read_passphrase_file};
use zeroize::Zeroizing;

/// `--json`.
#[derive(Debug, Clone, Copy, clap::Args)]
pub(crate) struct OutputArgs {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub(crate) json: bool,
}

/// `--passphrase-file` for commands that read a private key.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PassphraseArgs {
    /// File whose first line is the passphrase of an encrypted key.
    #[arg(long, value_name = "FILE", env = "SWARMVM_PASSPHRASE_FILE")]
    pub(crate) passphrase_file: Option<PathBuf>,
}

impl PassphraseArgs {
    pub(crate) fn read(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        self.passphrase_file
            .as_deref()
            .map(|p| {
                read_passphrase_file(p)
                    .with_context(|| format!("cannot use passphrase file {}", p.display()))
            })
            .transpose()
    }
}

/// Reads any key file, opening encrypted keys with the passphrase.
pub(crate) fn load_key(path: &Path, passphrase: &PassphraseArgs) -> Result<KeyMaterial> {
    let pass = passphrase.read()?;
    let (material, _) = read_key_file(path, pass.as_deref().map(|p| p.as_slice()))
        .with_context(|| format!("cannot use key {}", path.display()))?;
    Ok(material)
}

/// Reads a key file that must hold a private key.
pub(crate) fn load_wallet(path: &Path, passphrase: &PassphraseArgs) -> Result<Wallet> {
    match load_key(path, passphrase)? {
        KeyMaterial::Private(wallet) => Ok(wallet),
        KeyMaterial::Public(_) => {
            bail!("{} holds only a public key; a private key is needed to sign", path.display())
        }
    }
}

/// `--hs256-secret-file` and `--issuer`, the note-compatible shared secret.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Hs256Args {
    /// File holding an HS256 shared secret (at least 32 bytes; one trailing newline is
    /// ignored). For compatibility with the design note only.
    #[arg(long, value_name = "FILE")]
    pub(crate) hs256_secret_file: Option<PathBuf>,
    /// Issuer name of HS256 tokens (`iss`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_HS256_ISSUER, requires = "hs256_secret_file")]
    pub(crate) issuer: String,
}

impl Hs256Args {
    pub(crate) fn load(&self) -> Result<Option<Hs256Key>> {
        let Some(path) = &self.hs256_secret_file else { return Ok(None) };
        let mut secret = Zeroizing::new(
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        );
        if secret.ends_with(b"\n") {
            secret.pop();
            if secret.ends_with(b"\r") {
                secret.pop();
            }
        }
        let key = Hs256Key::new(&secret, self.issuer.clone())
            .with_context(|| format!("cannot use {}", path.display()))?;
        Ok(Some(key))
    }
}

/// `--trust` keys, a network's authorities and/or an HS256 secret: what a verifier trusts.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TrustArgs {
    /// A key file (public or private; only the public key is used) of a trusted authority.
    /// Repeat for several.
    #[arg(long = "trust", value_name = "PUBFILE", env = "SWARMVM_TRUST", value_delimiter = ',')]
    pub(crate) trust: Vec<PathBuf>,
    /// A network file: trust the members of its first authority set.
    #[arg(long, value_name = "FILE", env = "SWARMVM_NETWORK")]
    pub(crate) network: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) hs256: Hs256Args,
}

impl TrustArgs {
    pub(crate) fn load(&self) -> Result<TrustStore> {
        let mut store = TrustStore::new();
        for path in &self.trust {
            let (material, _) = read_key_file(path, None)
                .with_context(|| format!("cannot use trusted key {}", path.display()))?;
            store.add(material.public_key().clone());
        }
        if let Some(path) = &self.network {
            for (_, key) in read_network(path)?.genesis().members() {
                store.add(key.clone());
            }
        }
        if let Some(key) = self.hs256.load()? {
            store.set_hs256(key);
        }
        if store.is_empty() {
            bail!(
                "nothing is trusted: give --trust PUBFILE, --network FILE or --hs256-secret-file FILE"
            );
        }
        Ok(store)
    }
}

/// `--network FILE` or `--trust PUBFILE`: the network a peer follows, its root of trust.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct NetworkArgs {
    /// The network file (`swarmvm network init`): its id and first authority set.
    #[arg(long, value_name = "FILE", env = "SWARMVM_NETWORK", conflicts_with = "trust")]
    pub(crate) network: Option<PathBuf>,
    /// The key file of the one authority of a network of one key (threshold 1; the
    /// network id is the key's wallet id).
    #[arg(long = "trust", value_name = "PUBFILE", env = "SWARMVM_TRUST", value_delimiter = ',')]
    pub(crate) trust: Vec<PathBuf>,
}

impl NetworkArgs {
    pub(crate) fn load(&self) -> Result<Network> {
        if let Some(path) = &self.network {
            return read_network(path);
        }
        match self.trust.as_slice() {
            [] => bail!("no network given: give --network FILE or --trust PUBFILE"),
            [path] => {
                let (material, _) = read_key_file(path, None)
                    .with_context(|| format!("cannot use trusted key {}", path.display()))?;
                Ok(Network::single(material.public_key().clone()))
            }
            _ => bail!(
                "--trust names the one key of a network of one key; for several authorities make a network file with 'swarmvm network init' and give --network FILE"
            ),
        }
    }
}

/// Reads a network file (`swarmvm network init`).
pub(crate) fn read_network(path: &Path) -> Result<Network> {
    let bytes = read_bounded_file(path, swarmvm_token::MAX_NETWORK_FILE as u64)?;
    Network::parse(&bytes).with_context(|| format!("cannot use network file {}", path.display()))
}

/// Reads at most `max` bytes of `path`; a larger file is refused.
pub(crate) fn read_bounded_file(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{} is larger than {max} bytes", path.display());
    }
    Ok(bytes)
}

/// `--data-dir`: where a peer keeps its ledger.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct DataDirArgs {
    /// The peer's folder (its ledger is `ledger.redb` inside).
    #[arg(long, value_name = "DIR", env = "SWARMVM_DATA_DIR")]
    pub(crate) data_dir: PathBuf,
}

impl DataDirArgs {
    pub(crate) fn ledger_path(&self) -> PathBuf {
        self.data_dir.join("ledger.redb")
    }

    /// Opens the ledger for writing, creating the folder (mode 0700) and file if needed.
    pub(crate) fn open(&self) -> Result<swarmvm_ledger::Ledger> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.data_dir)
            .with_context(|| format!("cannot create data dir {}", self.data_dir.display()))?;
        let path = self.ledger_path();
        swarmvm_ledger::Ledger::open(&path)
            .with_context(|| format!("cannot open ledger {}", path.display()))
    }

    /// Opens an existing ledger for reading; works while a node has it open. A ledger left
    /// by a crash needs redb's recovery first, and one in an older format needs migrating,
    /// which a reader cannot do: then, if no other process has it open, it is opened for
    /// writing once (which recovers the last commit and migrates), and read.
    pub(crate) fn reader(&self) -> Result<swarmvm_ledger::LedgerReader> {
        let path = self.ledger_path();
        if !path.exists() {
            bail!("no ledger in {} (nothing applied yet)", self.data_dir.display());
        }
        match swarmvm_ledger::LedgerReader::open_read_only(&path) {
            Ok(reader) => Ok(reader),
            Err(read_err) => match swarmvm_ledger::Ledger::open(&path) {
                Ok(ledger) => Ok(ledger.reader()),
                Err(swarmvm_ledger::OpenError::Storage(_)) => Err(anyhow::Error::new(read_err))
                    .with_context(|| format!("cannot open ledger {}", path.display())),
                Err(e) => Err(anyhow::Error::new(e))
                    .with_context(|| format!("cannot open ledger {}", path.display())),
            },
        }
    }

    /// The ledger's last commit.
    pub(crate) fn snapshot(&self) -> Result<swarmvm_ledger::Snapshot> {
        let path = self.ledger_path();
        self.reader()?.snapshot().with_context(|| format!("cannot read ledger {}", path.display()))
    }
}

/// Reads a file of one token a line, skipping blank lines.
pub(crate) fn read_token_lines(path: &Path) -> Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}
