//! [`super::Decoding::Pmi`]: the syscall of each step comes from the task's
//! plan ([`crate::plan`]). Each clause's syscall is the one whose
//! plain-words hints ([`crate::examples::hint_for`]) fit it best by
//! pointwise mutual information — log P(" hint." | context) minus the same
//! after a content-free request — over two prompt forms and two phrasings
//! of every hint, each vector standardised and summed. Scored in the
//! scratch sequence; plans and content-free priors are cached.

use aos_abi::SyscallSpec;

use super::{Engine, EngineError, GenRequest, Planned};
use crate::bind::{self, PlanStep};
use crate::grammar::TAG_OPEN;
use aos_providers::TextSink;

/// The text before a hint (plain-text form; the chat form is
/// [`Engine::pmi_chat_context`]).
fn pmi_context(task: &str) -> String {
    format!("Request: {task}\nThis request asks to")
}

/// Weight of the content-free prior subtracted when scoring a later clause
/// of a task (1 for the first call). Short clauses carry little evidence,
/// so the hints' own prior weighs more; on `evals/plans.jsonl` 1.25 made 15
/// of 20 later clauses right where 1.0 made 12, 0.75 made 5 and 1.5 made 10
/// (chosen on that set: see `evals/README.md`).
const LATER_CLAUSE_PRIOR_WEIGHT: f64 = 1.25;

/// The key of a cache entry (plans, priors) computed from `parts`.
fn cache_key(parts: &impl std::hash::Hash) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Index of the largest value (the first of equals; 0 when empty).
fn argmax(v: &[f64]) -> usize {
    (0..v.len()).fold(0, |b, i| if v[i] > v[b] { i } else { b })
}

/// `v` shifted and scaled to mean 0 and standard deviation 1 (PMI vectors of
/// different prompt forms have different spreads; this weighs them alike).
fn standardise(v: &[f64]) -> Vec<f64> {
    let n = v.len().max(1) as f64;
    let mean = v.iter().sum::<f64>() / n;
    let sd = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    let sd = if sd > 1e-9 { sd } else { 1.0 };
    v.iter().map(|x| (x - mean) / sd).collect()
}

impl Engine {
    /// [`super::Decoding::Pmi`]: the next step of the task's plan
    /// ([`crate::plan`], [`crate::frame`], [`crate::bind`]): a whole reply
    /// when the plan builds the call's arguments (a composed text written by
    /// the model first), or the syscall whose arguments the model writes.
    /// None (the names are then scored in the conversation) when the last
    /// message is neither the task nor the kernel's answer to a call (an
    /// event, a message, a line on stdin), or the plan cannot be made.
    pub(super) fn plan_choice(&mut self, req: &GenRequest) -> Result<Option<Planned>, EngineError> {
        if req.specs.len() < 2 {
            return Ok(None);
        }
        let Some((role, last)) = req.messages.last() else {
            return Ok(None);
        };
        if role != "user"
            || !["[TASK]", "[RESULT ", "[ERROR "]
                .iter()
                .any(|p| last.starts_with(p))
        {
            return Ok(None);
        }
        let Some(task) = bind::task_text(&req.messages) else {
            return Ok(None);
        };
        let Some((plan, evaluated)) = self.plan_for(&task, &req.specs)? else {
            return Ok(None);
        };
        let names: Vec<&str> = req.specs.iter().map(|s| s.name.as_str()).collect();
        let done = bind::history(&req.messages);
        let allowed = |n: &str| names.contains(&n);
        let built = |text: String| Planned::Reply {
            text,
            evaluated,
            generated: 0,
            streamed: false,
            truncated: false,
        };
        let named = crate::frame::task_names(&task);
        Ok(match bind::next(&plan, &done, &allowed, &named) {
            bind::Next::Call { name, args } => Some(built(bind::reply_text(&name, &args))),
            bind::Next::Model { name, paths } => names
                .iter()
                .position(|n| *n == name)
                .map(|k| Planned::Name(k, evaluated, paths)),
            bind::Next::Compose {
                name,
                args,
                field,
                what,
                lines,
                source,
            } => {
                // The reply streams as it is made: the call up to the opening
                // quote of the composed value, the value, the closing.
                let (open, close) = bind::args_text_open(&args, &field);
                let head = format!("{TAG_OPEN}{name}] {open}");
                TextSink::send(&self.report.text, &head);
                let (text, n, truncated) =
                    self.compose(&what, lines, source.as_deref(), req.max_tokens)?;
                TextSink::send(&self.report.text, &close);
                if text.trim().is_empty() && !truncated {
                    // Nothing usable came out: say so rather than write junk.
                    let result = format!("Could not compose {what}: the model wrote nothing usable. Done before: {}.", bind::summary(&done));
                    let args = serde_json::json!({ "code": 1, "result": result });
                    Some(built(bind::reply_text("SYS_EXIT", &args)))
                } else {
                    let text = format!("{head}{}{close}", super::sample::json_escape(&text));
                    Some(Planned::Reply {
                        text,
                        evaluated,
                        generated: n,
                        streamed: true,
                        truncated,
                    })
                }
            }
        })
    }

    /// The plan of `task` for a process with `specs`: the steps of each
    /// clause ([`crate::plan::clauses`]) — built from its words when
    /// [`crate::frame`] recognises it, else one syscall chosen by PMI whose
    /// arguments the model writes — cached per (task, names); and the tokens
    /// evaluated to make it (0 when cached or when no clause needed the
    /// model). None when a scoring prompt does not fit.
    pub fn plan_for(
        &mut self,
        task: &str,
        specs: &[SyscallSpec],
    ) -> Result<Option<(Vec<PlanStep>, u32)>, EngineError> {
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        let key = cache_key(&(task, &names));
        if let Some(p) = self.plans.get(&key) {
            return Ok(Some((p.clone(), 0)));
        }
        // The first call is chosen from the whole task (measured better than
        // from its first clause alone: "compute 17 * 3 and show the result"
        // starts with printing), the later ones from their clauses.
        let mut evaluated = 0;
        let mut plan = Vec::new();
        let clauses = crate::plan::clauses(task);
        let framed = crate::frame::read_task(&clauses);
        for (c, (clause, steps)) in clauses.iter().zip(framed).enumerate() {
            self.progress(aos_abi::ModelProgress::Planning {
                done: c as u64,
                total: clauses.len() as u64,
            });
            if let Some(steps) = steps {
                plan.extend(steps.into_iter().map(|s| PlanStep {
                    syscall: s.syscall().to_string(),
                    step: Some(s),
                }));
                continue;
            }
            // Later clauses are short ("print it", "exit"): their hints'
            // content-free prior is subtracted with more weight (see
            // `LATER_CLAUSE_PRIOR_WEIGHT`).
            let (text, weight) = if c == 0 {
                (task, 1.0)
            } else {
                (clause.as_str(), LATER_CLAUSE_PRIOR_WEIGHT)
            };
            let Some((total, n)) = self.pmi_scores(text, specs, weight)? else {
                return Ok(None);
            };
            evaluated += n;
            plan.push(PlanStep {
                syscall: specs[argmax(&total)].name.clone(),
                step: None,
            });
        }
        if clauses.is_empty() {
            return Ok(None);
        }
        tracing::debug!("plan for {task:?}: {plan:?}");
        if self.plans.len() > 256 {
            self.plans.clear();
        }
        self.plans.insert(key, plan.clone());
        Ok(Some((plan, evaluated)))
    }

    /// How well each spec's hints fit `text`: two prompt forms × two
    /// phrasings of every hint, each PMI vector standardised over the
    /// candidates, then summed. Returns the sums and the tokens evaluated.
    fn pmi_scores(
        &mut self,
        text: &str,
        specs: &[SyscallSpec],
        prior_weight: f64,
    ) -> Result<Option<(Vec<f64>, u32)>, EngineError> {
        let mut total = vec![0.0; specs.len()];
        let mut evaluated = 0;
        let forms = [
            (pmi_context(text), pmi_context("N/A")),
            (self.pmi_chat_context(text)?, self.pmi_chat_context("N/A")?),
        ];
        for k in 0..2 {
            let hints: Vec<String> = specs
                .iter()
                .map(|s| crate::examples::hint_for(s, k))
                .collect();
            for (context, neutral) in &forms {
                let Some((sc, n)) = self.pmi(context, neutral, &hints, prior_weight)? else {
                    return Ok(None);
                };
                evaluated += n;
                for (t, z) in total.iter_mut().zip(standardise(&sc)) {
                    *t += z;
                }
            }
        }
        if tracing::enabled!(tracing::Level::DEBUG) {
            let v: Vec<_> = specs
                .iter()
                .zip(&total)
                .map(|(s, x)| format!("{}={x:.1}", s.name))
                .collect();
            tracing::debug!(
                "PMI for {text:?}: {} [{}]",
                specs[argmax(&total)].name,
                v.join(" ")
            );
        }
        Ok(Some((total, evaluated)))
    }

    /// The chat form of the text before a hint: the task as the user's
    /// message in the model's own chat template, and the assistant's answer
    /// starting "I will".
    fn pmi_chat_context(&self, task: &str) -> Result<String, EngineError> {
        Ok(format!(
            "{}I will",
            self.render(&[("user".to_string(), task.to_string())])?
        ))
    }

    /// PMI of each hint: log P(" hint." | context) − `prior_weight` ·
    /// log P(" hint." | neutral), the neutral scores cached per (neutral,
    /// hints).
    fn pmi(
        &mut self,
        context: &str,
        neutral: &str,
        hints: &[String],
        prior_weight: f64,
    ) -> Result<Option<(Vec<f64>, u32)>, EngineError> {
        let pairs: Vec<(String, String)> = hints
            .iter()
            .map(|h| (context.to_string(), format!(" {h}.")))
            .collect();
        let Some((sc, _, n)) = self.score_pairs(&pairs)? else {
            return Ok(None);
        };
        let key = cache_key(&(hints, &neutral));
        let (prior, n2) = match self.priors.get(&key) {
            Some(p) => (p.clone(), 0),
            None => {
                let npairs: Vec<(String, String)> = hints
                    .iter()
                    .map(|h| (neutral.to_string(), format!(" {h}.")))
                    .collect();
                let Some((p, _, n2)) = self.score_pairs(&npairs)? else {
                    return Ok(None);
                };
                if self.priors.len() > 256 {
                    self.priors.clear();
                }
                self.priors.insert(key, p.clone());
                (p, n2)
            }
        };
        Ok(Some((
            sc.iter()
                .zip(&prior)
                .map(|(s, p)| s - prior_weight * p)
                .collect(),
            n + n2,
        )))
    }
}
