//! The on-disk cache of compiled guests.
//!
//! Compiling a component takes tens of milliseconds (seconds for large
//! JavaScript guests); loading a compiled artifact takes a fraction of a
//! millisecond. Artifacts are keyed by the SHA-256 of the `.wasm` and the
//! engine's compatibility hash (wasmtime version, settings, CPU features),
//! so an upgrade simply recompiles.
//!
//! Loading a compiled artifact is `unsafe` in wasmtime: a forged file runs
//! arbitrary code. The cache directory is therefore created by wasmsink
//! with mode 0700, files are written atomically, and only ever hold what
//! this process compiled; users hand wasmsink `.wasm` files, never compiled
//! ones.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// Compiled artifacts kept; older ones are removed (guests rebuilt during
/// development would otherwise pile up).
const MAX_ENTRIES: usize = 32;

/// A directory of compiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: PathBuf,
}

/// Whether a component came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a compiled artifact.
    Hit,
    /// Compiled (and stored, when the cache is writable).
    Miss,
}

impl CompileCache {
    /// Opens (creating with mode 0700) the cache directory; `None` when it
    /// cannot be used, in which case every load compiles.
    pub fn open(dir: &Path) -> Option<Self> {
        let created = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        let private =
            std::fs::metadata(dir).map(|m| m.is_dir() && m.permissions().mode() & 0o077 == 0);
        match (created, private) {
            (Ok(()), Ok(true)) => Some(Self {
                dir: dir.to_owned(),
            }),
            (Ok(()), _) => {
                tracing::warn!(dir = %dir.display(), "the guest cache directory is readable by others; not using it");
                None
            }
            (Err(error), _) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot use the guest cache directory; guests will be compiled at every start");
                None
            }
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Loads the compiled form of `wasm`, compiling and storing it on a miss.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        let path = self.dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if matches!(
            Engine::detect_precompiled_file(&path),
            Ok(Some(Precompiled::Component))
        ) {
            // SAFETY: the file is in a private directory that only this host
            // writes, under a name derived from the wasm's hash and this
            // engine's compatibility hash; wasmtime still checks the header
            // against the engine and refuses a mismatch.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok((component, CacheOutcome::Hit)),
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "cached guest unusable; recompiling")
                }
            }
        }
        let compiled = engine.precompile_component(wasm)?;
        if let Err(error) = write_atomically(&path, &compiled) {
            tracing::warn!(path = %path.display(), %error, "cannot store the compiled guest");
        }
        self.prune();
        // SAFETY: these bytes were produced by `precompile_component` above.
        let component = unsafe { Component::deserialize(engine, &compiled)? };
        Ok((component, CacheOutcome::Miss))
    }
}

impl CompileCache {
    /// Keeps the [`MAX_ENTRIES`] most recently written artifacts.
    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut artifacts: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if artifacts.len() <= MAX_ENTRIES {
            return;
        }
        artifacts.sort();
        for (_, path) in &artifacts[..artifacts.len() - MAX_ENTRIES] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `sha256(wasm)-hash(engine compatibility)`.
fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!(
        "{}-{:016x}",
        hex::encode(Sha256::digest(wasm)),
        hasher.finish()
    )
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_load_hits_the_cache_and_a_private_dir_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let cache_dir = dir.path().join("cache");
        let cache = CompileCache::open(&cache_dir).unwrap();
        assert_eq!(
            std::fs::metadata(&cache_dir).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        let engine = Engine::new(&config).unwrap();
        let wasm = super::super::BUILTIN_GUEST_WASM;
        assert_eq!(cache.load(&engine, wasm).unwrap().1, CacheOutcome::Miss);
        assert_eq!(cache.load(&engine, wasm).unwrap().1, CacheOutcome::Hit);
        assert_eq!(
            std::fs::read_dir(&cache_dir).unwrap().count(),
            1,
            "one artifact, no temporary files"
        );

        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(CompileCache::open(&shared).is_none());
    }
}
