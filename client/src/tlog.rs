//! Reading a cache's transparency log as any tlog-tiles client does: the
//! checkpoint verified with the log's key from `cache info`, checked
//! consistent with the last one this client saw of that log (kept under
//! `$XDG_CONFIG_HOME/provenix/tlog/`, like Go's sumdb client), and every
//! hash read from tiles authenticated against its root.

use anyhow::{bail, Context, Result};
use provenix_provenance::tlog::checkpoint::{self, VerifiedCheckpoint};
use provenix_provenance::tlog::tiles::{self, TilePath};
use provenix_provenance::tlog::{Hash, Tile};
use std::collections::HashMap;
use std::path::PathBuf;
use tlog_tiles::TileHashReader;

use crate::api::ApiClient;

/// The log failed a check: a signature, a proof, or consistency with what
/// this client saw before. Not a network failure: the command exits 3
/// (docs/transparency-log.md), so cron jobs tell the two apart.
#[derive(Debug)]
pub struct Tampered(pub String);

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Tampered {}

/// Whether `e` is, or was caused by, a failed check of the log.
pub fn is_tampered(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Tampered>())
}

macro_rules! tampered {
    ($($arg:tt)*) => {
        return Err(Tampered(format!($($arg)*)).into())
    };
}

pub struct LogReader {
    /// Where the origin this cache names is remembered.
    origin_file: PathBuf,
    api: ApiClient,
    cache: String,
    pub origin: String,
    /// The key this client trusts for the log: the one it remembered, or
    /// on first sight the newest `cache info` lists.
    verifier_key: String,
    /// The newest key `cache info` lists: taken on once a checkpoint
    /// signed by the trusted key carries its signature too.
    newest_key: String,
    /// Witnesses' cosignature keys, and how many must have cosigned.
    witnesses: Vec<String>,
    pub quorum: usize,
}

/// The keys a client trusts for one log, remembered when it read the log
/// online so that `provenix verify --offline` can check a bundle later
/// (and flags override them).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Trust {
    pub origin: String,
    pub verifier_key: String,
    pub witnesses: Vec<String>,
    pub quorum: usize,
}

/// The trust remembered for `origin`, if this client read that log.
pub fn remembered_trust(origin: &str) -> Result<Option<Trust>> {
    let path = sibling(&memory_path(origin)?, "trust");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a remembered trust file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Text from a server or a bundle, made safe to print: control
/// characters (an escape sequence could rewrite the terminal's lines) are
/// shown escaped.
pub fn plain(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A short hex digest naming a memory file: distinct inputs never share
/// one, whatever characters they hold.
fn digest(text: &str) -> String {
    tlog_tiles::record_hash(text.as_bytes()).0[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn memory_path(origin: &str) -> Result<PathBuf> {
    // Readable, and unique by the digest (sanitising alone let two
    // origins share a file, and `..` named the parent directory).
    let readable: String = origin
        .chars()
        .take(60)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(crate::config::config_home()?
        .join("provenix/tlog")
        .join(format!("{readable}-{}", digest(origin))))
}

/// Where the log origin a server named for a cache is remembered: the
/// same cache must keep naming the same log.
fn cache_origin_path(endpoint: &str, cache: &str) -> Result<PathBuf> {
    Ok(crate::config::config_home()?
        .join("provenix/tlog")
        .join(format!(
            "cache-{}.origin",
            digest(&format!("{endpoint}\n{cache}"))
        )))
}

/// `path` with `.suffix` appended (origins hold dots, so not
/// `with_extension`, which would cut the name at its last one).
pub fn sibling(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().expect("a file name").to_os_string();
    name.push(".");
    name.push(suffix);
    path.with_file_name(name)
}

pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = sibling(path, "new");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// What checking a new checkpoint against the remembered one found.
pub enum Continuity {
    /// This client had not seen the log before.
    First,
    /// Consistent with the remembered checkpoint of this size.
    ConsistentWith(u64),
}

impl LogReader {
    pub async fn new(api: ApiClient, cache: &str) -> Result<LogReader> {
        let info = api.cache_info(cache).await?;
        let log = info.transparency_log.with_context(|| {
            format!("cache {cache:?} has no transparency log (an older server?)")
        })?;
        let printable =
            |s: &str| !s.is_empty() && s.len() <= 1024 && !s.chars().any(char::is_control);
        if !printable(&log.origin) || !log.verifier_keys.iter().all(|k| printable(&k.verifier_key))
        {
            tampered!("the server names a log origin or key that is empty, too long or holds control characters");
        }
        // The cache keeps its log: a server naming another origin for it
        // (a re-created cache, or a server showing this client another
        // log than the one it followed) is refused until the user says so.
        let origin_file = cache_origin_path(api.endpoint(), cache)?;
        match std::fs::read_to_string(&origin_file) {
            Ok(known) if known != log.origin => tampered!(
                "cache {cache:?} now names the log {}, but this client followed {} there (a re-created cache, or a server showing another log); refusing it: check out of band, then remove {} to follow the new log",
                log.origin,
                plain(&known),
                origin_file.display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", origin_file.display())),
        }
        let newest_key = log
            .verifier_keys
            .first()
            .context("the log publishes no verifier key")?
            .verifier_key
            .clone();
        let verifier_key = match remembered_trust(&log.origin)? {
            Some(t) => t.verifier_key,
            None => newest_key.clone(),
        };
        Ok(LogReader {
            origin_file,
            api,
            cache: cache.to_string(),
            origin: log.origin,
            verifier_key,
            newest_key,
            witnesses: log.witnesses.into_iter().map(|w| w.verifier_key).collect(),
            quorum: log.witness_quorum,
        })
    }

    async fn file(&self, rel: &str) -> Result<Vec<u8>> {
        self.api.log_file(&self.cache, rel).await
    }

    /// The log's checkpoint, verified and checked consistent with the one
    /// remembered, which it then replaces. A checkpoint that is not (a
    /// smaller tree, or a tree whose prefix differs) is refused.
    pub async fn checkpoint(&mut self) -> Result<(VerifiedCheckpoint, Continuity)> {
        let note = self.file("checkpoint").await?;
        let cp = checkpoint::verify(&note, &self.verifier_key, &self.origin).map_err(|e| {
            let hint = if self.newest_key != self.verifier_key {
                format!(
                    "; the server now names the key {} (a rotation whose overlap this client missed?): check it out of band, then remove {} to trust it",
                    self.newest_key,
                    self.memory_file("trust")
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                )
            } else {
                String::new()
            };
            Tampered(format!(
                "the log's checkpoint is not signed by the key this client trusts ({}): {e}{hint}",
                self.verifier_key
            ))
        })?;
        let cosigned =
            provenix_provenance::tlog::witness::count_cosignatures(&note, &self.witnesses)
                .map_err(|e| {
                    Tampered(format!(
                        "a witness's cosignature on the checkpoint does not verify: {e}"
                    ))
                })?;
        if cosigned < self.quorum {
            tampered!(
                "the log's checkpoint has {cosigned} of the {} witness cosignatures it needs",
                self.quorum
            );
        }
        let remembered = self.remembered()?;
        let continuity = match remembered {
            None => Continuity::First,
            Some(old) => {
                if cp.size < old.size {
                    tampered!(
                        "the log {} went back from {} entries (seen before) to {}: a rolled-back or forked log; refusing it",
                        self.origin, old.size, cp.size
                    );
                }
                let old_root = self
                    .read(&cp, |r| tlog_tiles::tree_hash(old.size, r))
                    .await
                    .context("cannot read the log's tree at the remembered size")?;
                if old_root != old.root {
                    tampered!(
                        "the log {} is not consistent with the checkpoint of {} entries seen before: its history was rewritten; refusing it",
                        self.origin, old.size
                    );
                }
                Continuity::ConsistentWith(old.size)
            }
        };
        if self.newest_key != self.verifier_key
            && checkpoint::verify(&note, &self.newest_key, &self.origin).is_ok()
        {
            // Signed by the key trusted and by its successor: the log's
            // key was rotated, and the old key vouches for the new one.
            eprintln!(
                "The log {} is now signed by a new key, {}, beside the one trusted before; trusting it from now on.",
                self.origin, self.newest_key
            );
            self.verifier_key = self.newest_key.clone();
        }
        self.remember(&cp)?;
        if !self.origin_file.exists() {
            write_atomically(&self.origin_file, self.origin.as_bytes())?;
        }
        Ok((cp, continuity))
    }

    /// The witnesses that cosigned `cp`, of those the log names.
    pub fn cosigned(&self, cp: &VerifiedCheckpoint) -> usize {
        provenix_provenance::tlog::witness::count_cosignatures(&cp.note, &self.witnesses)
            .unwrap_or(0)
    }

    pub fn witness_count(&self) -> usize {
        self.witnesses.len()
    }

    /// Runs `f` over the tree of `cp` with the tiles it needs, fetched.
    pub async fn read<T>(
        &self,
        cp: &VerifiedCheckpoint,
        f: impl Fn(&TileHashReader<'_>) -> Result<T, tlog_tiles::Error>,
    ) -> Result<T> {
        let wanted = tiles::tiles_read_by(cp.size, cp.root, &f);
        let mut fetched: HashMap<Tile, Vec<u8>> = HashMap::new();
        for t in wanted {
            let data = self.file(&tiles::path_of(&t)).await?;
            fetched.insert(t, data);
        }
        tiles::with_tiles(cp.size, cp.root, &fetched, f).map_err(|e| {
            Tampered(format!("the log's tiles do not match its checkpoint: {e}")).into()
        })
    }

    /// Entry `index` (< `cp.size`), checked to be the leaf the tree holds.
    pub async fn entry(&self, cp: &VerifiedCheckpoint, index: u64) -> Result<Vec<u8>> {
        if index >= cp.size {
            bail!("the log has {} entries; there is no entry {index}", cp.size);
        }
        let bundle = index / tiles::WIDTH;
        let width = (cp.size - bundle * tiles::WIDTH).min(tiles::WIDTH) as u32;
        let path = TilePath::bundle(bundle, width).path();
        let data = self.file(&path).await?;
        let entries = tiles::unbundle(&data)
            .ok_or_else(|| Tampered(format!("{path} is not an entry bundle")))?;
        let entry = entries
            .get((index % tiles::WIDTH) as usize)
            .ok_or_else(|| Tampered(format!("{path} holds no entry {index}")))?
            .clone();
        let proof = self
            .read(cp, |r| tlog_tiles::prove_record(cp.size, index, r))
            .await?;
        tlog_tiles::check_record(
            &proof,
            cp.size,
            cp.root,
            index,
            tlog_tiles::record_hash(&entry),
        )
        .map_err(|_| Tampered(format!("entry {index} is not the one the log's tree holds")))?;
        Ok(entry)
    }

    /// The entries of bundle `n` as far as `cp` covers it, each checked
    /// to be the leaf the tree holds; the first is entry `n * 256`.
    pub async fn bundle(&self, cp: &VerifiedCheckpoint, n: u64) -> Result<Vec<Vec<u8>>> {
        let first = n * tiles::WIDTH;
        if first >= cp.size {
            bail!("the log has {} entries; there is no bundle {n}", cp.size);
        }
        let width = (cp.size - first).min(tiles::WIDTH) as u32;
        let path = TilePath::bundle(n, width).path();
        let data = self.file(&path).await?;
        let entries = tiles::unbundle(&data)
            .ok_or_else(|| Tampered(format!("{path} is not an entry bundle")))?;
        // Each entry must hash to its leaf, read from authenticated tiles.
        let leaves = self
            .read(cp, |r| {
                let idx: Vec<u64> = (first..first + u64::from(width))
                    .map(|n| tlog_tiles::stored_hash_index(0, n))
                    .collect();
                tlog_tiles::HashReader::read_hashes(r, &idx)
            })
            .await?;
        if entries.len() != width as usize
            || entries
                .iter()
                .zip(&leaves)
                .any(|(e, h)| tlog_tiles::record_hash(e) != *h)
        {
            tampered!("{path} does not hold the entries the log's tree does");
        }
        Ok(entries)
    }

    /// Entries `start..cp.size`, each checked against the tree.
    pub async fn entries_from(&self, cp: &VerifiedCheckpoint, start: u64) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        let mut n = start / tiles::WIDTH;
        while n * tiles::WIDTH < cp.size {
            let first = n * tiles::WIDTH;
            for (i, e) in self.bundle(cp, n).await?.into_iter().enumerate() {
                if first + i as u64 >= start {
                    out.push(e);
                }
            }
            n += 1;
        }
        Ok(out)
    }

    /// Where this client keeps what it remembers of the log: the
    /// checkpoint's file with `.suffix` (a monitor's state, the trust).
    pub fn memory_file(&self, suffix: &str) -> Result<PathBuf> {
        Ok(sibling(&self.memory()?, suffix))
    }

    fn memory(&self) -> Result<PathBuf> {
        memory_path(&self.origin)
    }

    /// Witnesses the user pins (`--witness`), in place of those the server
    /// names in `cache info`: a server cannot then drop a witness that
    /// would refuse its checkpoints.
    pub fn pin_witnesses(&mut self, keys: Vec<String>, quorum: Option<usize>) {
        if !keys.is_empty() {
            self.quorum = quorum.unwrap_or(keys.len());
            self.witnesses = keys;
        } else if let Some(q) = quorum {
            self.quorum = q;
        }
    }

    /// Remembers the keys this log was checked with for `verify --offline`.
    pub fn remember_trust(&self) -> Result<()> {
        let path = sibling(&self.memory()?, "trust");
        let trust = Trust {
            origin: self.origin.clone(),
            verifier_key: self.verifier_key.clone(),
            witnesses: self.witnesses.clone(),
            quorum: self.quorum,
        };
        write_atomically(&path, &serde_json::to_vec_pretty(&trust)?)
    }

    fn remembered(&self) -> Result<Option<VerifiedCheckpoint>> {
        let path = self.memory()?;
        match std::fs::read(&path) {
            Ok(note) => checkpoint::verify(&note, &self.verifier_key, &self.origin)
                .map(Some)
                .with_context(|| {
                    format!(
                        "the remembered checkpoint {} does not verify",
                        path.display()
                    )
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn remember(&self, cp: &VerifiedCheckpoint) -> Result<()> {
        write_atomically(&self.memory()?, &cp.note)?;
        self.remember_trust()
    }
}

/// A root hash for people: base64, as checkpoints write it.
pub fn show(root: &Hash) -> String {
    checkpoint::root_base64(root)
}

#[cfg(test)]
mod plain_text_tests {
    use super::*;

    #[test]
    fn control_characters_are_shown_escaped() {
        assert_eq!(plain("laptop stolen"), "laptop stolen");
        assert_eq!(
            plain("x\u{1b}]0;PWNED\u{7}\u{1b}[31mRED\rfake"),
            "x\\u{1b}]0;PWNED\\u{7}\\u{1b}[31mRED\\rfake"
        );
    }

    #[test]
    fn memory_files_are_distinct_and_inside_the_directory() {
        let a = memory_path("example.com/a:b").unwrap();
        let b = memory_path("example.com/a_b").unwrap();
        assert_ne!(a, b, "sanitising alone made these one file");
        let dotdot = memory_path("..").unwrap();
        assert_ne!(dotdot.file_name().unwrap(), "..");
        assert_eq!(dotdot.parent(), a.parent());
        assert!(sibling(&dotdot, "trust").file_name().is_some());
    }
}
