//! The syscall router: typed handlers registered by name, their argument
//! schemas generated with `schemars`, and JSON (de)serialization at the edge.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{SyscallError, SyscallSpec};

type Handler = Box<dyn Fn(&str) -> Result<String, SyscallError> + Send + Sync>;

struct Entry {
    spec: SyscallSpec,
    handler: Handler,
}

/// The syscalls of one driver.
#[derive(Default)]
pub struct Router {
    entries: Vec<Entry>,
}

/// Implemented by a driver type; see [`crate::export_driver`].
pub trait Driver {
    /// Builds the driver's router. Called once per instance.
    fn router() -> Router;
}

/// The JSON Schema of `A`, trimmed of noise (`$schema`, `title`) that would
/// only cost prompt tokens.
pub fn schema_of<A: JsonSchema>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(A)).unwrap_or_default();
    if let Some(obj) = schema.as_object_mut() {
        obj.remove("$schema");
        obj.remove("title");
    }
    schema
}

impl Router {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `NAME`: `handler` receives the arguments deserialized as `A`
    /// (invalid arguments are answered with a precise error without calling it)
    /// and its result is serialized as the syscall's JSON result.
    pub fn syscall<A, R, F>(self, name: &str, description: &str, handler: F) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Result<R, SyscallError> + Send + Sync + 'static,
    {
        self.syscall_requiring(name, description, &[], handler)
    }

    /// Like [`Router::syscall`], declaring capabilities this syscall needs
    /// beyond the driver's imports (e.g. `fs:rw` for writes), so agents without
    /// them are not offered it.
    pub fn syscall_requiring<A, R, F>(
        mut self,
        name: &str,
        description: &str,
        requires: &[&str],
        handler: F,
    ) -> Self
    where
        A: DeserializeOwned + JsonSchema + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Result<R, SyscallError> + Send + Sync + 'static,
    {
        assert!(
            !self.entries.iter().any(|e| e.spec.name == name),
            "syscall {name} registered twice"
        );
        let owned_name = name.to_string();
        let handler: Handler = Box::new(move |raw: &str| {
            let args: A = serde_json::from_str(raw).map_err(|e| {
                SyscallError::InvalidArguments(format!("{owned_name}: {e}"))
            })?;
            let out = handler(args)?;
            serde_json::to_string(&out)
                .map_err(|e| SyscallError::Internal(format!("cannot serialize the result: {e}")))
        });
        self.entries.push(Entry {
            spec: SyscallSpec {
                name: name.to_string(),
                description: description.to_string(),
                args_schema: schema_of::<A>().to_string(),
                requires: requires.iter().map(|s| s.to_string()).collect(),
            },
            handler,
        });
        self
    }

    /// The specs of all registered syscalls.
    pub fn describe(&self) -> Vec<SyscallSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// Dispatches one call.
    pub fn handle(&self, name: &str, args: &str) -> Result<String, SyscallError> {
        let entry = self.entries.iter().find(|e| e.spec.name == name).ok_or_else(|| {
            SyscallError::NotFound(format!(
                "this driver has no syscall `{name}` (it offers {})",
                self.entries.iter().map(|e| e.spec.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        })?;
        (entry.handler)(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Arguments.
    #[derive(Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Echo {
        /// What to echo.
        text: String,
        times: Option<u32>,
    }

    fn router() -> Router {
        Router::new().syscall("ECHO", "Echo.", |a: Echo| {
            Ok(a.text.repeat(a.times.unwrap_or(1) as usize))
        })
    }

    #[test]
    fn schema_is_generated_from_the_type() {
        let specs = router().describe();
        let schema: serde_json::Value = serde_json::from_str(&specs[0].args_schema).unwrap();
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["required"], serde_json::json!(["text"]));
        assert_eq!(schema["properties"]["text"]["description"], "What to echo.");
        assert!(schema.get("$schema").is_none());
    }

    #[test]
    fn dispatches_and_reports_bad_arguments() {
        let r = router();
        assert_eq!(r.handle("ECHO", r#"{"text":"ab","times":2}"#).unwrap(), "\"abab\"");
        match r.handle("ECHO", r#"{"txt":"ab"}"#) {
            Err(SyscallError::InvalidArguments(m)) => assert!(m.contains("unknown field `txt`"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(r.handle("NOPE", "{}"), Err(SyscallError::NotFound(_))));
    }
}
