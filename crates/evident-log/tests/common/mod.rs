//! Storage shared by the log's tests: the simulated disk with its `open` passed through a hook,
//! so that a test can wrap the files it hands out (to hold or count their syncs) or refuse to
//! open some paths (to play out of descriptors), while everything else goes to `SimStorage`.

use std::any::Any;
use std::io;
use std::path::Path;
use std::sync::Arc;

use evident_log::storage::{SimStorage, Storage, StorageFile};

/// What `open` does instead of `SimStorage::open` (which it may call).
pub type OpenHook = dyn Fn(&SimStorage, &Path, bool) -> io::Result<Arc<dyn StorageFile>> + Send + Sync;

/// `SimStorage` with a hook on `open`.
#[derive(Clone)]
pub struct HookedStorage {
    sim: SimStorage,
    hook: Arc<OpenHook>,
}

impl HookedStorage {
    /// `sim` behind `hook`, as the log takes a storage.
    pub fn shared(
        sim: SimStorage,
        hook: impl Fn(&SimStorage, &Path, bool) -> io::Result<Arc<dyn StorageFile>> + Send + Sync + 'static,
    ) -> Arc<dyn Storage> {
        Arc::new(Self { sim, hook: Arc::new(hook) })
    }
}

impl Storage for HookedStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.sim.create_dir_all(path)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<String>> {
        self.sim.list_dir(path)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        (self.hook)(&self.sim, path, create)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.sim.exists(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.sim.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.sim.rename(from, to)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.sim.sync_dir(path)
    }
    fn lock_dir(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.sim.lock_dir(path)
    }
}
