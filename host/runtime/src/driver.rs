//! A loaded driver: its compiled component, the host interfaces its imports
//! use (read from the component type before it is ever instantiated), and
//! the syscalls it described; what each syscall requires of a caller.

use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::Engine;

use aos_abi::{Capability, CapabilitySet, Missing, SyscallSpec};

use crate::interfaces::{self, Import, InterfaceSet};

/// Why a component cannot be used as a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverLoadError {
    #[error("driver `{driver}` imports `{import}`: {why}")]
    Import { driver: String, import: String, why: String },
    #[error("driver `{driver}` is not a valid AgentOS driver component: {detail}")]
    Invalid { driver: String, detail: String },
    #[error("driver `{driver}` declares syscall `{syscall}`: {why}")]
    BadSpec { driver: String, syscall: String, why: String },
}

/// Reads a component's imports and maps each to a host interface (see
/// [`crate::interfaces`]); imports AgentOS never provides are refused with
/// the reason.
pub(crate) fn imports_of(engine: &Engine, component: &Component, driver: &str) -> Result<InterfaceSet, DriverLoadError> {
    let mut set = InterfaceSet::default();
    for (name, _) in component.component_type().imports(engine) {
        match interfaces::classify(name) {
            Ok(Import::Base) => {}
            Ok(Import::Optional(i)) => set.insert(i),
            Err(why) => {
                return Err(DriverLoadError::Import {
                    driver: driver.to_string(),
                    import: name.to_string(),
                    why: why.to_string(),
                })
            }
        }
    }
    Ok(set)
}

/// One syscall of a loaded driver.
#[derive(Debug, Clone)]
pub struct LoadedSyscall {
    pub spec: SyscallSpec,
    /// Extra capabilities declared by the spec (e.g. `fs:rw`).
    pub requires: Vec<Capability>,
}

/// Where a driver came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverSource {
    BuiltIn,
    Installed(std::path::PathBuf),
}

/// A driver ready to be instantiated.
pub struct LoadedDriver {
    pub name: Arc<str>,
    pub source: DriverSource,
    pub sha256: String,
    pub component: Component,
    /// The optional host interfaces its imports use.
    pub(crate) imports: InterfaceSet,
    pub syscalls: Vec<LoadedSyscall>,
}

impl LoadedDriver {
    /// The grant of its own an installed (third-party) driver needs: `driver:NAME`.
    fn own_grant(&self) -> Option<Capability> {
        matches!(self.source, DriverSource::Installed(_)).then(|| Capability::Driver(self.name.to_string()))
    }

    /// What any syscall of this driver needs, as `aos driver ls` shows it:
    /// its interfaces' requirements, then its own `driver:NAME` grant.
    pub fn needs_shown(&self) -> Vec<String> {
        let mut v: Vec<String> = self.imports.iter().map(|i| i.shown()).collect();
        v.extend(self.own_grant().map(|c| c.to_string()));
        v
    }

    /// Capabilities an agent needs for `syscall` of this driver (the weakest
    /// of each requirement, without those a stronger one implies).
    pub fn requirements(&self, syscall: &LoadedSyscall) -> Vec<Capability> {
        let mut req: Vec<Capability> = self.imports.iter().map(|i| i.weakest()).collect();
        req.extend(self.own_grant());
        for r in &syscall.requires {
            if !req.contains(r) {
                req.push(r.clone());
            }
        }
        let all = req.clone();
        req.retain(|c| !all.iter().any(|o| o != c && o.implies(c)));
        req
    }

    /// The first requirement of `syscall` that `caps` does not satisfy:
    /// its interfaces (in the order of [`interfaces::ALL`]), its own
    /// `driver:NAME` grant, then what the syscall declares (e.g. `fs:rw`).
    pub fn missing(&self, syscall: &LoadedSyscall, caps: &CapabilitySet) -> Option<Missing> {
        if let Some(m) = self.imports.first_missing(caps) {
            return Some(m);
        }
        if let Some(c) = self.own_grant().filter(|c| !caps.grants(c)) {
            return Some(Missing::capability(c));
        }
        syscall.requires.iter().find(|c| !caps.grants(c)).map(|c| Missing::capability(c.clone()))
    }
}

/// Validates a spec a driver returned from `describe`.
pub(crate) fn check_spec(
    driver: &str,
    name: &str,
    schema: &str,
    requires: &[String],
) -> Result<(serde_json::Value, Vec<Capability>), DriverLoadError> {
    let bad = |why: String| DriverLoadError::BadSpec {
        driver: driver.to_string(),
        syscall: name.to_string(),
        why,
    };
    if name.is_empty()
        || name.len() > 64
        || !name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(bad("syscall names are 1-64 characters of A-Z, 0-9 and _".into()));
    }
    let schema: serde_json::Value =
        serde_json::from_str(schema).map_err(|e| bad(format!("its argument schema is not JSON: {e}")))?;
    if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
        return Err(bad("its argument schema must describe a JSON object (\"type\": \"object\")".into()));
    }
    let requires = requires
        .iter()
        .map(|r| r.parse::<Capability>().map_err(|e| bad(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((schema, requires))
}
