//! The data directory of `serve`, `load`, `check` and `token`: refusing a mistyped path,
//! opening the store and the service over it, and settling the store after a clean stop.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use empi::linker::Linker;
use empi::scoring::Model;
use empi::service::{Service, ServiceConfig};
use empi::store::{SledStore, Store};

/// The linker for an optional model file.
pub fn linker(model: Option<&Path>) -> Result<Linker> {
    let model = match model {
        Some(p) => Model::load(p)?,
        None => Model::default_model(),
    };
    Ok(Linker::new(model)?)
}

/// Refuses a `--data` that is not an existing store, unless `create` (the `--create` of a
/// command that writes), so a mistyped path is an error rather than a new, empty store
/// beside the real one. `empi serve` creates its store without being asked.
///
/// # Errors
/// When `data` holds no store and `create` is false.
pub fn existing_store(data: &Path, create: bool) -> Result<()> {
    if create || SledStore::exists(data) {
        return Ok(());
    }
    anyhow::bail!(
        "{}: not an empi store (no `db` file); check the path, or pass --create to make a new one",
        data.display()
    )
}

/// Opens the store in `data` (creating it) and the service over it, loading the index
/// snapshot kept in `data` when it matches the store, rebuilding the index otherwise.
pub fn open_service(data: &Path, model: Option<&Path>, config: ServiceConfig) -> Result<Service> {
    open_service_and_store(data, model, config).map(|(service, _)| service)
}

/// As [`open_service`], also returning the store for the audit trail to stage its lines in
/// ([`AuditLog::open_staged`](empi::auth::AuditLog::open_staged)).
pub fn open_service_and_store(
    data: &Path,
    model: Option<&Path>,
    mut config: ServiceConfig,
) -> Result<(Service, Arc<SledStore>)> {
    let linker = linker(model)?;
    config.snapshot = Some(empi::service::snapshot::path_in(data));
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let store = SledStore::open(data).with_context(|| format!("opening {}", data.display()))?;
    let store = Arc::new(store);
    let service = Service::open(Arc::clone(&store) as Arc<dyn Store>, linker, config)?;
    Ok((service, store))
}

/// After a clean stop, with the store closed: has sled record its page table now, so the
/// next start does not read the whole log ([`SledStore::settle`]). Failing costs only
/// that, so it warns.
pub fn settle_store(data: &Path) {
    let started = std::time::Instant::now();
    match SledStore::settle(data) {
        Ok(()) => tracing::info!(
            secs = started.elapsed().as_secs_f64(),
            "store settled for a fast next start"
        ),
        Err(e) => tracing::warn!(
            error = %e,
            "store not settled; the next start reads sled's whole log"
        ),
    }
}
