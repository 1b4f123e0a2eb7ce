//! `aos:kernel/embedder` and `aos:kernel/vector-store` (capability `memory`
//! or any `memory:shared/NAME`): long-term memory. The host, not the guest,
//! decides which memory space a call reaches, from the pid and capabilities
//! the instance was created for:
//!
//! - `""` is the calling process's private space (needs `memory`);
//! - `"shared/NAME"` is a shared space (needs `memory:shared/NAME`);
//! - anything else is refused.
//!
//! The work itself is done by the [`aos_memory::MemoryService`] configured in
//! `RuntimeConfig::memory`; without one, every call says how to set it up.
//! Time spent in these calls is added back to the guest's deadline.

use wasmtime::component::{HasSelf, Linker};

use aos_abi::{Capability, CapabilitySet, SyscallError};
use aos_memory::{MemoryError, MemoryService, Space};

use super::{HostInterface, Prepare};
use crate::bindings::aos::kernel::{embedder, vector_store};
use crate::bindings::WitSyscallError;
use crate::state::DriverState;

pub(crate) struct Memory;

impl HostInterface for Memory {
    fn wit_names(&self) -> &'static [&'static str] {
        &["aos:kernel/embedder", "aos:kernel/vector-store"]
    }
    fn enabled_by(&self, caps: &CapabilitySet) -> bool {
        caps.any(|c| matches!(c, Capability::Memory | Capability::MemoryShared(_)))
    }
    fn weakest(&self) -> Capability {
        Capability::Memory
    }
    fn add_to_linker(&self, l: &mut Linker<DriverState>) -> wasmtime::Result<()> {
        embedder::add_to_linker::<DriverState, HasSelf<DriverState>>(l, |s| s)?;
        vector_store::add_to_linker::<DriverState, HasSelf<DriverState>>(l, |s| s)
    }
    fn prepare(&self, cx: &mut Prepare<'_>) -> Result<(), SyscallError> {
        cx.hosts.memory = cx.shared.memory.clone();
        cx.hosts.memory_caps = cx.agent.caps.clone();
        Ok(())
    }
}

fn no_memory() -> WitSyscallError {
    WitSyscallError::Internal(
        "long-term memory is not configured in this kernel (see `[memory]` in aos.toml); \
         the embedding model is installed by `scripts/fetch-embedder.sh`"
            .into(),
    )
}

pub(crate) fn to_wit(e: MemoryError) -> WitSyscallError {
    let e = match e {
        MemoryError::InvalidInput(m) => SyscallError::InvalidArguments(m),
        MemoryError::TooLarge(m) => SyscallError::LimitExceeded(m),
        MemoryError::Unavailable(m) => SyscallError::Io(m),
        MemoryError::Io(m) => SyscallError::Io(m),
        MemoryError::Backend(m) => SyscallError::Internal(m),
    };
    e.into()
}

/// Resolves the space a guest named, under the instance's grants.
pub(crate) fn resolve_space(pid: u64, caps: &CapabilitySet, space: &str) -> Result<Space, WitSyscallError> {
    if space.is_empty() {
        if pid == 0 {
            return Err(WitSyscallError::Denied("no process is calling; there is no private memory".into()));
        }
        if !caps.contains(&Capability::Memory) {
            return Err(WitSyscallError::Denied(
                "your private memory needs capability `memory`, which you were not granted; \
                 name a shared space you hold (`space: \"shared/NAME\"`)"
                    .into(),
            ));
        }
        return Ok(Space::Private(pid));
    }
    let Some(name) = space.strip_prefix("shared/") else {
        return Err(WitSyscallError::InvalidArguments(format!(
            "unknown memory space `{space}`: omit `space` for your own memory, or use \"shared/NAME\""
        )));
    };
    if !caps.contains(&Capability::MemoryShared(name.to_string())) {
        return Err(WitSyscallError::Denied(format!(
            "capability `memory:shared/{name}` not granted; you cannot use memory space `{space}`"
        )));
    }
    Ok(Space::Shared(name.to_string()))
}

impl DriverState {
    fn memory_service(&self) -> Result<MemoryService, WitSyscallError> {
        self.hosts.memory.clone().ok_or_else(no_memory)
    }
}

impl embedder::Host for DriverState {
    async fn dimension(&mut self) -> u32 {
        self.hosts.memory.as_ref().map(|m| m.dimension() as u32).unwrap_or(0)
    }

    async fn embed(&mut self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, WitSyscallError> {
        let m = self.memory_service()?;
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let r = m.embed(texts).await;
        self.deadline += started.elapsed();
        r.map_err(to_wit)
    }
}

impl vector_store::Host for DriverState {
    async fn upsert(
        &mut self,
        space: String,
        record: vector_store::MemoryRecord,
        embedding: Vec<f32>,
    ) -> Result<(), WitSyscallError> {
        let m = self.memory_service()?;
        let space = resolve_space(self.pid, &self.hosts.memory_caps, &space)?;
        let rec = aos_memory::MemoryRecord { key: record.key, text: record.text, metadata: record.metadata };
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let r = m.upsert(&space, rec, embedding).await;
        self.deadline += started.elapsed();
        r.map_err(to_wit)
    }

    async fn query(
        &mut self,
        space: String,
        embedding: Vec<f32>,
        k: u32,
    ) -> Result<Vec<vector_store::MemoryHit>, WitSyscallError> {
        let m = self.memory_service()?;
        let space = resolve_space(self.pid, &self.hosts.memory_caps, &space)?;
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let r = m.query(&space, embedding, k as usize).await;
        self.deadline += started.elapsed();
        Ok(r.map_err(to_wit)?
            .into_iter()
            .map(|h| vector_store::MemoryHit { key: h.key, text: h.text, metadata: h.metadata, score: h.score })
            .collect())
    }

    async fn delete(&mut self, space: String, key: String) -> Result<bool, WitSyscallError> {
        let m = self.memory_service()?;
        let space = resolve_space(self.pid, &self.hosts.memory_caps, &space)?;
        let started = std::time::Instant::now();
        let _bounded = self.clock.host_call();
        let r = m.delete(&space, &key).await;
        self.deadline += started.elapsed();
        r.map_err(to_wit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spaces_follow_grants() {
        let caps = |g: &[&str]| CapabilitySet::parse(g).unwrap();
        assert_eq!(resolve_space(3, &caps(&["memory"]), "").unwrap(), Space::Private(3));
        assert!(matches!(resolve_space(3, &caps(&["memory:shared/team"]), ""), Err(WitSyscallError::Denied(_))));
        assert_eq!(
            resolve_space(3, &caps(&["memory:shared/team"]), "shared/team").unwrap(),
            Space::Shared("team".into())
        );
        assert!(matches!(resolve_space(3, &caps(&["memory"]), "shared/team"), Err(WitSyscallError::Denied(_))));
        assert!(matches!(
            resolve_space(3, &caps(&["memory:shared/team"]), "shared/other"),
            Err(WitSyscallError::Denied(_))
        ));
        assert!(matches!(resolve_space(3, &caps(&["memory"]), "agent-4"), Err(WitSyscallError::InvalidArguments(_))));
        assert!(matches!(resolve_space(3, &caps(&["all"]), "shared/x"), Err(WitSyscallError::Denied(_))));
    }
}
