//! The nodes VMs run on, by name: the built-in local one, and those admins added, each
//! with its driver.

use std::collections::BTreeMap;
use std::sync::Arc;

use porthole_core::driver::Driver;

use porthole_core::SpecError;

use crate::error::ApiError;

/// The nodes VMs run on, by name: the built-in local one, and those admins added. It is the
/// one registry of drivers; a kind's own driver type (an agent node's, for heartbeats) is
/// reached from it with [`NodeRegistry::typed`] and [`NodeRegistry::of_type`].
#[derive(Debug, Default)]
pub struct NodeRegistry {
    drivers: std::sync::RwLock<BTreeMap<String, Arc<dyn Driver>>>,
}

impl NodeRegistry {
    /// The built-in node on this host.
    pub const LOCAL: &'static str = "local";

    /// Node names: 1-32 of `a-z`, `0-9` and `-`, starting with a letter.
    pub fn check_name(name: &str) -> Result<(), SpecError> {
        let ok = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !ok {
            return Err(SpecError::new(
                "name",
                "must be 1-32 of a-z, 0-9 and -, starting with a letter",
            ));
        }
        if name == Self::LOCAL {
            return Err(SpecError::new("name", "\"local\" is the built-in node"));
        }
        Ok(())
    }

    /// Nodes with only the local one, if this host runs VMs.
    pub fn local(driver: Option<Arc<dyn Driver>>) -> Self {
        let nodes = Self::default();
        if let Some(driver) = driver {
            nodes.insert(Self::LOCAL, driver);
        }
        nodes
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<dyn Driver>>> {
        self.drivers.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The driver of node `name`.
    pub fn get(&self, name: &str) -> Result<Arc<dyn Driver>, ApiError> {
        self.read()
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::Unavailable(format!("node {name:?} is not configured")))
    }

    /// The driver of node `name`, failing at once with 503 if the node is known to be down.
    pub fn get_online(&self, name: &str) -> Result<Arc<dyn Driver>, ApiError> {
        let driver = self.get(name)?;
        match driver.unavailable() {
            Some(why) => Err(ApiError::Unavailable(format!(
                "{why}; its VMs cannot be used until it answers again"
            ))),
            None => Ok(driver),
        }
    }

    /// Every node, as of now.
    pub fn all(&self) -> Vec<(String, Arc<dyn Driver>)> {
        self.read()
            .iter()
            .map(|(name, driver)| (name.clone(), Arc::clone(driver)))
            .collect()
    }

    /// Every node whose driver is a `T` (every agent node, say), as of now.
    pub fn of_type<T: Driver>(&self) -> Vec<(String, Arc<T>)> {
        self.read()
            .iter()
            .filter_map(|(name, driver)| Some((name.clone(), downcast::<T>(driver)?)))
            .collect()
    }

    /// Node `name`'s driver, if it is a `T`.
    pub fn typed<T: Driver>(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).and_then(downcast::<T>)
    }

    /// Adds (or replaces) node `name`.
    pub fn insert(&self, name: &str, driver: Arc<dyn Driver>) {
        self.drivers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), driver);
    }

    /// Forgets node `name`.
    pub fn remove(&self, name: &str) {
        self.drivers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// `driver` as its own type `T`, if it is one.
fn downcast<T: Driver>(driver: &Arc<dyn Driver>) -> Option<Arc<T>> {
    Arc::clone(driver).into_any().downcast::<T>().ok()
}
