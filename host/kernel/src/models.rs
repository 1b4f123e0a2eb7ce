//! Model access: provider instances per (name, base URL), built once by
//! the [`ProviderFactory`] and shared by every process using them; a
//! FIFO-fair semaphore per provider bounding its concurrent model calls
//! (ready processes take turns in arrival order); the compaction window
//! of each process's model; and which (provider, base URL, model) rejected
//! native tool calls (`auto` tool mode then uses text for it).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use aos_providers::{Provider, ProviderError};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::config::KernelConfig;
use crate::pcb::Process;

/// Builds a provider from its name (`openai`, `script`, ...) and optional base URL.
pub type ProviderFactory =
    Arc<dyn Fn(&str, Option<&str>) -> Result<Arc<dyn Provider>, ProviderError> + Send + Sync>;

/// (provider name, base URL).
type ProviderKey = (String, Option<String>);

pub(crate) struct Models {
    factory: ProviderFactory,
    providers: Mutex<HashMap<ProviderKey, Arc<dyn Provider>>>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    concurrency: usize,
    provider_concurrency: BTreeMap<String, usize>,
    context_window: usize,
    model_context_windows: BTreeMap<String, usize>,
    /// (provider, base URL, model) whose server rejected the tool list.
    tools_rejected: Mutex<std::collections::HashSet<(String, Option<String>, String)>>,
}

impl Models {
    pub fn new(factory: ProviderFactory, config: &KernelConfig) -> Models {
        Models {
            factory,
            providers: Mutex::new(HashMap::new()),
            slots: Mutex::new(HashMap::new()),
            concurrency: config.model_concurrency,
            provider_concurrency: config.provider_concurrency.clone(),
            context_window: config.context_window,
            model_context_windows: config.model_context_windows.clone(),
            tools_rejected: Mutex::new(Default::default()),
        }
    }

    /// The provider `name` at `base_url` (built on first use).
    pub fn provider(&self, name: &str, base_url: Option<&str>) -> Result<Arc<dyn Provider>, ProviderError> {
        let key = (name.to_string(), base_url.map(str::to_string));
        if let Some(p) = self.providers.lock().get(&key) {
            return Ok(p.clone());
        }
        let p = (self.factory)(name, base_url)?;
        Ok(self.providers.lock().entry(key).or_insert(p).clone())
    }

    /// The semaphore bounding concurrent calls to `provider`.
    pub fn slots(&self, provider: &str) -> Arc<Semaphore> {
        let mut m = self.slots.lock();
        m.entry(provider.to_string())
            .or_insert_with(|| {
                let n = self.provider_concurrency.get(provider).copied().unwrap_or(self.concurrency);
                Arc::new(Semaphore::new(n.max(1)))
            })
            .clone()
    }

    /// Whether `p` sends its syscalls as native tools: its mode is not
    /// `text`, its provider has tool calling, and (in `auto` mode) the
    /// server has not rejected tools for its model in this kernel's run.
    pub fn native_tools(&self, p: &Process) -> bool {
        use aos_abi::ToolMode;
        match p.tool_mode {
            ToolMode::Text => false,
            ToolMode::Native => p.provider.supports_tools(),
            ToolMode::Auto => p.provider.supports_tools() && !self.tools_rejected.lock().contains(&key_of(p)),
        }
    }

    /// Remembers that `p`'s server rejected native tools for its model.
    pub fn reject_tools(&self, p: &Process) {
        self.tools_rejected.lock().insert(key_of(p));
    }

    /// The compaction window of `p` before any shrinking: the configured
    /// one of its model, or its provider's real capacity if smaller.
    pub fn base_window(&self, p: &Process) -> usize {
        let configured = self.model_context_windows.get(&p.model).copied().unwrap_or(self.context_window);
        match p.provider.context_window(&p.model) {
            Some(w) => configured.min(w),
            None => configured,
        }
    }
}

fn key_of(p: &Process) -> (String, Option<String>, String) {
    (p.provider_name.clone(), p.base_url.clone(), p.model.clone())
}
