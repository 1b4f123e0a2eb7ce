//! The grant ceiling: the most an agent spawned over MCP may be granted,
//! set by the operator (`aos mcp serve --max-grants`, else `[mcp.serve]
//! max_grants` in aos.toml, else `default_grants`, the rights of a plain
//! `aos spawn`). A request beyond it is refused, naming the rights and the
//! setting that would allow them.

use aos_abi::{CapabilitySet, UnknownCapability};

/// Where the ceiling came from (named in refusals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeilingSource {
    /// `aos mcp serve --max-grants`.
    Flag,
    /// `[mcp.serve] max_grants` in aos.toml.
    Config,
    /// `default_grants` (aos.toml / AOS_GRANTS): nothing more was configured.
    Defaults,
}

impl CeilingSource {
    fn how_to_raise(self) -> &'static str {
        match self {
            CeilingSource::Flag => "the operator raises it with `aos mcp serve --max-grants`",
            CeilingSource::Config => "the operator raises it with `[mcp.serve] max_grants` in aos.toml",
            CeilingSource::Defaults => {
                "the ceiling is `default_grants`; the operator raises it with `[mcp.serve] max_grants` in \
                 aos.toml or `aos mcp serve --max-grants`"
            }
        }
    }
}

/// A grant request that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CeilingError {
    /// A name that is no capability.
    #[error(transparent)]
    Unknown(UnknownCapability),
    /// Rights beyond the ceiling.
    #[error("{} beyond what agents spawned over MCP may get ({ceiling}): ask for less, or ask the operator ({how})", quoted(rights))]
    Beyond { rights: Vec<String>, ceiling: String, how: &'static str },
}

/// "`a` is" / "`a`, `b` are".
fn quoted(rights: &[String]) -> String {
    let names = rights.iter().map(|r| format!("`{r}`")).collect::<Vec<_>>().join(", ");
    format!("{names} {}", if rights.len() == 1 { "is" } else { "are" })
}

/// The most an MCP-spawned agent may get.
#[derive(Debug, Clone)]
pub struct Ceiling {
    set: CapabilitySet,
    source: CeilingSource,
}

impl Ceiling {
    /// The ceiling of `grants` (capability names or `all`), from `source`.
    pub fn new(grants: &[String], source: CeilingSource) -> Result<Ceiling, CeilingError> {
        let set = CapabilitySet::parse(grants).map_err(CeilingError::Unknown)?;
        Ok(Ceiling { set, source })
    }

    /// The operator's ceiling: `flag` (`--max-grants`) if given, else
    /// `config` (`[mcp.serve] max_grants`), else `defaults` (`default_grants`).
    pub fn choose(flag: &[String], config: Option<&[String]>, defaults: &[String]) -> Result<Ceiling, CeilingError> {
        match (flag, config) {
            ([_, ..], _) => Ceiling::new(flag, CeilingSource::Flag),
            ([], Some(c)) => Ceiling::new(c, CeilingSource::Config),
            ([], None) => Ceiling::new(defaults, CeilingSource::Defaults),
        }
    }

    pub fn source(&self) -> CeilingSource {
        self.source
    }

    /// The ceiling's rights, printable (`fs:ro, fs:rw, ipc, timers`).
    pub fn names(&self) -> Vec<String> {
        self.set.names()
    }

    /// The grants to spawn with: `requested` if every right in it is within
    /// the ceiling, or a refusal naming those that are not. Without a
    /// request, the `defaults` (`default_grants`) that are within the
    /// ceiling.
    pub fn grants_for(&self, requested: Option<&[String]>, defaults: &[String]) -> Result<Vec<String>, CeilingError> {
        let Some(requested) = requested else {
            let within = |g: &String| CapabilitySet::parse([g]).is_ok_and(|s| s.is_subset_of(&self.set));
            return Ok(defaults.iter().filter(|g| within(g)).cloned().collect());
        };
        let asked = CapabilitySet::parse(requested).map_err(CeilingError::Unknown)?;
        match self.set.delegate(&asked) {
            Ok(_) => Ok(requested.to_vec()),
            Err(missing) => {
                // Name the rights as asked (`exec:net`, not also its implied `exec`).
                let mut rights: Vec<String> = requested
                    .iter()
                    .filter(|g| CapabilitySet::parse([g]).is_ok_and(|s| !s.is_subset_of(&self.set)))
                    .map(|g| g.trim().to_string())
                    .collect();
                if rights.is_empty() {
                    rights = missing.0.iter().map(|c| c.to_string()).collect();
                }
                Err(CeilingError::Beyond { rights, ceiling: self.set.to_string(), how: self.source.how_to_raise() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn requests_within_the_ceiling_pass_and_others_are_refused_by_name() {
        let c = Ceiling::new(&v(&["fs:rw", "timers", "net:example.com"]), CeilingSource::Config).unwrap();
        assert_eq!(c.grants_for(Some(&v(&["fs:ro", "net:example.com"])), &[]).unwrap(), v(&["fs:ro", "net:example.com"]));
        assert_eq!(c.grants_for(Some(&[]), &[]).unwrap(), Vec::<String>::new(), "no rights is always within");

        let e = c.grants_for(Some(&v(&["fs:rw", "net", "exec:net"])), &[]).unwrap_err();
        let msg = e.to_string();
        assert_eq!(e, CeilingError::Beyond {
            rights: v(&["net", "exec:net"]),
            ceiling: "fs:ro, fs:rw, net:example.com, timers".into(),
            how: CeilingSource::Config.how_to_raise(),
        });
        assert!(msg.starts_with("`net`, `exec:net` are beyond what agents spawned over MCP may get (fs:ro, fs:rw"), "{msg}");
        assert!(msg.contains("`[mcp.serve] max_grants` in aos.toml"), "{msg}");

        let e = c.grants_for(Some(&v(&["fs:write"])), &[]).unwrap_err().to_string();
        assert!(e.contains("unknown capability `fs:write` (did you mean `fs:rw`?)"), "{e}");
    }

    #[test]
    fn without_a_request_the_defaults_within_the_ceiling_are_granted() {
        let c = Ceiling::new(&v(&["fs:ro", "timers"]), CeilingSource::Flag).unwrap();
        assert_eq!(c.grants_for(None, &v(&["fs:rw", "timers", "ipc"])).unwrap(), v(&["timers"]));
        let e = c.grants_for(Some(&v(&["ipc"])), &[]).unwrap_err().to_string();
        assert!(e.contains("`aos mcp serve --max-grants`"), "{e}");
    }

    #[test]
    fn the_flag_wins_over_the_config_which_wins_over_the_defaults() {
        let defaults = v(&["fs:rw", "timers", "ipc"]);
        let c = Ceiling::choose(&v(&["net"]), Some(&v(&["exec"])), &defaults).unwrap();
        assert_eq!((c.source(), c.names()), (CeilingSource::Flag, v(&["net"])));
        let c = Ceiling::choose(&[], Some(&v(&["exec"])), &defaults).unwrap();
        assert_eq!((c.source(), c.names()), (CeilingSource::Config, v(&["exec"])));
        let c = Ceiling::choose(&[], None, &defaults).unwrap();
        assert_eq!(c.source(), CeilingSource::Defaults);
        assert!(c.grants_for(Some(&v(&["net"])), &defaults).unwrap_err().to_string().contains("the ceiling is `default_grants`"));
        assert!(Ceiling::choose(&v(&["nett"]), None, &defaults).is_err());
    }
}
