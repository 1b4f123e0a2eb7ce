//! A loaded driver: its compiled component, the capabilities its imports
//! require (read from the component type before it is ever instantiated), and
//! the syscalls it described.

use std::fmt;
use std::sync::Arc;

use wasmtime::component::Component;
use wasmtime::Engine;

use aos_abi::{Capability, CapabilitySet, SyscallSpec};

/// A capability requirement derived from one import.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Need {
    /// `wasi:filesystem` — the workspace (`fs:ro` at least).
    Fs,
    /// `wasi:http` — `net` or `net:HOST`.
    Net,
    /// `aos:kernel/timers`.
    Timers,
    /// `aos:kernel/container`.
    Exec,
    /// `aos:kernel/embedder`, `aos:kernel/vector-store`.
    Memory,
    /// A third-party driver needs its own `driver:NAME` grant.
    Driver(String),
}

impl Need {
    pub fn satisfied_by(&self, caps: &CapabilitySet) -> bool {
        match self {
            Need::Fs => caps.contains(&Capability::FsRead),
            Need::Net => caps.has_any_net(),
            Need::Timers => caps.contains(&Capability::Timers),
            Need::Exec => caps.contains(&Capability::Exec),
            Need::Memory => {
                caps.contains(&Capability::Memory)
                    || caps.iter().any(|c| matches!(c, Capability::MemoryShared(_)))
            }
            Need::Driver(n) => caps.contains(&Capability::Driver(n.clone())),
        }
    }

    /// The weakest capability that satisfies this need.
    pub fn capability(&self) -> Capability {
        match self {
            Need::Fs => Capability::FsRead,
            Need::Net => Capability::Net,
            Need::Timers => Capability::Timers,
            Need::Exec => Capability::Exec,
            Need::Memory => Capability::Memory,
            Need::Driver(n) => Capability::Driver(n.clone()),
        }
    }

    /// Whether this build of the kernel can link what the need refers to.
    pub fn linkable(&self) -> bool {
        true
    }
}

impl fmt::Display for Need {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Need::Net => f.write_str("net (or net:HOST)"),
            other => write!(f, "{}", other.capability()),
        }
    }
}

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

/// Reads a component's imports and maps each to a [`Need`]; imports AgentOS
/// never provides are refused with the reason.
pub fn needs_of(engine: &Engine, component: &Component, driver: &str) -> Result<Vec<Need>, DriverLoadError> {
    let mut needs = Vec::new();
    for (name, _) in component.component_type().imports(engine) {
        let iface = name.split('@').next().unwrap_or(name);
        let refuse = |why: &str| DriverLoadError::Import {
            driver: driver.to_string(),
            import: name.to_string(),
            why: why.to_string(),
        };
        let need = match iface {
            "wasi:filesystem/types" | "wasi:filesystem/preopens" => Some(Need::Fs),
            "wasi:http/outgoing-handler" | "wasi:http/types" => Some(Need::Net),
            "aos:kernel/timers" => Some(Need::Timers),
            "aos:kernel/container" => Some(Need::Exec),
            "aos:kernel/embedder" | "aos:kernel/vector-store" => Some(Need::Memory),
            "aos:kernel/log" | "aos:kernel/config" | "aos:kernel/types" => None,
            i if i.starts_with("wasi:io/")
                || i.starts_with("wasi:clocks/")
                || i.starts_with("wasi:random/")
                || i.starts_with("wasi:cli/") =>
            {
                None
            }
            i if i.starts_with("wasi:sockets/") => {
                return Err(refuse(
                    "raw sockets are never granted to drivers; make HTTP requests through wasi:http (capability `net`)",
                ))
            }
            _ => return Err(refuse("AgentOS provides no such interface (see wit/ for what drivers may import)")),
        };
        if let Some(n) = need {
            if !needs.contains(&n) {
                needs.push(n);
            }
        }
    }
    for n in &needs {
        if !n.linkable() {
            return Err(DriverLoadError::Import {
                driver: driver.to_string(),
                import: format!("{n}"),
                why: "this kernel build cannot provide that capability to drivers yet".into(),
            });
        }
    }
    needs.sort();
    Ok(needs)
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
    pub needs: Vec<Need>,
    pub syscalls: Vec<LoadedSyscall>,
}

impl LoadedDriver {
    /// Capabilities an agent needs for `syscall` of this driver.
    pub fn requirements(&self, syscall: &LoadedSyscall) -> Vec<Capability> {
        let mut req: Vec<Capability> = self.needs.iter().map(Need::capability).collect();
        for r in &syscall.requires {
            if !req.contains(r) {
                req.push(r.clone());
            }
        }
        // Drop what a stronger requirement implies (`fs:rw` ⇒ `fs:ro`).
        let implied: Vec<Capability> = req
            .iter()
            .filter_map(|c| match c {
                Capability::FsWrite => Some(Capability::FsRead),
                Capability::ExecNet => Some(Capability::Exec),
                _ => None,
            })
            .collect();
        req.retain(|c| !implied.contains(c));
        req
    }

    /// The first requirement of `syscall` that `caps` does not satisfy.
    pub fn missing(&self, syscall: &LoadedSyscall, caps: &CapabilitySet) -> Option<String> {
        if let Some(n) = self.needs.iter().find(|n| !n.satisfied_by(caps)) {
            return Some(n.to_string());
        }
        syscall.requires.iter().find(|c| !caps.grants(c)).map(|c| c.to_string())
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
