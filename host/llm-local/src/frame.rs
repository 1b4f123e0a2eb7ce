//! What each clause of a task asks for, read from its words: an operation
//! (read, write, append, copy, move, list, print, delete, make a folder,
//! remember, recall, wait), the names it works on and the text it writes.
//!
//! A 135M model chooses a plausible first syscall but invents arguments:
//! paths nobody named, `"{"` as content, the task's own file overwritten. The
//! task text already holds most arguments, so this module takes them from it
//! *by construction*:
//!
//! * **Names** are the file and folder names the task mentions (a word with
//!   an extension or a `/`, or the word after "folder"/"called"/"named"),
//!   names seen in earlier results (a listing), or nothing.
//! * **Text to write** is a quoted text copied exactly, a short literal
//!   ("the word hello", "the number 42", "hello world to hw.txt"), a part of
//!   the last result ("its first line", "the contents"), or, when it must be
//!   composed (a haiku, a summary), the model's own free text
//!   ([`Text::Compose`]), placed in the call afterwards.
//! * **Targets**: only a name the task gives as the thing to write, move to
//!   or delete is ever written or deleted ([`Step::target`]); the local
//!   provider never touches another file.
//!
//! A clause this module does not recognise is left to the model
//! ([`crate::plan`]'s PMI choice of a syscall, arguments under the grammar).

/// One call the plan makes, with where its arguments come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// `FS_READ path`.
    Read { path: Path },
    /// `FS_WRITE path` with `text`; `append` adds to the end.
    Write {
        path: String,
        text: Text,
        append: bool,
    },
    /// `SYS_WRITE_STDOUT text`.
    Print { text: Text },
    /// `FS_LIST` of a folder (the workspace when `None`).
    List { path: Option<String> },
    /// `FS_DELETE path`.
    Delete { path: String, recursive: bool },
    /// `FS_MKDIR path`.
    Mkdir { path: String },
    /// `SLEEP seconds`.
    Sleep { seconds: f64 },
    /// `MEM_WRITE key value`.
    Remember { key: String, value: String },
    /// `MEM_READ query`.
    Recall { query: String },
    /// `SYS_EXIT` with this code (the task asked for it).
    Exit { code: i64 },
}

/// A path to read: a name, or the only file a listing showed ("read the
/// file in the workspace").
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    Named(String),
    OnlyListed,
}

/// Where a text comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    /// Exactly this text (quoted in the task, or a short literal).
    Exact(String),
    /// A part of the last result that holds data (a file read, a memory
    /// recalled, a listing).
    FromLast(Select),
    /// Composed by the model: the instruction ("a haiku about the sea"), the
    /// number of lines asked for (0: any, at most a few), and whether the
    /// last result is its source ("a summary of it").
    Compose {
        what: String,
        lines: usize,
        from_last: bool,
    },
}

/// Which part of the last result.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    All,
    /// The n-th line (0-based); `usize::MAX` is the last.
    Line(usize),
    FirstLines(usize),
    LineCount,
    WordCount,
    /// The text with every `from` replaced by `to`.
    Replace {
        from: String,
        to: String,
    },
}

impl Step {
    /// The syscall this step calls.
    pub fn syscall(&self) -> &'static str {
        match self {
            Step::Read { .. } => "FS_READ",
            Step::Write { .. } => "FS_WRITE",
            Step::Print { .. } => "SYS_WRITE_STDOUT",
            Step::List { .. } => "FS_LIST",
            Step::Delete { .. } => "FS_DELETE",
            Step::Mkdir { .. } => "FS_MKDIR",
            Step::Sleep { .. } => "SLEEP",
            Step::Remember { .. } => "MEM_WRITE",
            Step::Recall { .. } => "MEM_READ",
            Step::Exit { .. } => "SYS_EXIT",
        }
    }

    /// The workspace path this step changes, if any (always a name the task gave).
    pub fn target(&self) -> Option<&str> {
        match self {
            Step::Write { path, .. } | Step::Delete { path, .. } | Step::Mkdir { path } => {
                Some(path)
            }
            _ => None,
        }
    }
}

/// A clause split into words, with its quoted texts taken out.
#[derive(Debug)]
struct Words {
    /// Lower-case words with surrounding punctuation removed; a quoted text
    /// is one word `"\u{1}N"` (its index in `quoted`).
    w: Vec<String>,
    /// The words as written (punctuation kept, apart from a sentence end).
    raw: Vec<String>,
    /// The words exactly as written (for composed texts: "milk, eggs").
    orig: Vec<String>,
    quoted: Vec<String>,
}

const QUOTE_MARK: char = '\u{1}';

fn split_words(clause: &str) -> Words {
    let mut w = Vec::new();
    let mut raw = Vec::new();
    let mut orig = Vec::new();
    let mut quoted = Vec::new();
    let chars: Vec<char> = clause.chars().collect();
    let mut i = 0;
    let mut cur = String::new();
    let flush =
        |cur: &mut String, w: &mut Vec<String>, raw: &mut Vec<String>, orig: &mut Vec<String>| {
            if !cur.is_empty() {
                let r = cur
                    .trim_end_matches(['.', ',', ';', '!', '?', ':'])
                    .to_string();
                let low = r
                    .trim_matches(|c: char| {
                        !c.is_alphanumeric() && c != '/' && c != '_' && c != '-' && c != '.'
                    })
                    .to_lowercase();
                let low = low.trim_end_matches('.').to_string();
                if !low.is_empty() {
                    w.push(low);
                    raw.push(
                        r.trim_start_matches(['(', '['])
                            .trim_end_matches([')', ']'])
                            .to_string(),
                    );
                    orig.push(cur.clone());
                }
                cur.clear();
            }
        };
    while i < chars.len() {
        let c = chars[i];
        // A quote opens a quoted text at the start of a word (not "Anna's").
        if (c == '\'' || c == '"' || c == '‘' || c == '“') && cur.is_empty() {
            let close = match c {
                '‘' => '’',
                '“' => '”',
                c => c,
            };
            if let Some(len) = chars[i + 1..].iter().position(|&d| d == close) {
                let text: String = chars[i + 1..i + 1 + len].iter().collect();
                flush(&mut cur, &mut w, &mut raw, &mut orig);
                w.push(format!("{QUOTE_MARK}{}", quoted.len()));
                raw.push(format!("{QUOTE_MARK}{}", quoted.len()));
                orig.push(format!("{QUOTE_MARK}{}", quoted.len()));
                quoted.push(text);
                i += len + 2;
                continue;
            }
        }
        if c.is_whitespace() {
            flush(&mut cur, &mut w, &mut raw, &mut orig);
        } else {
            cur.push(c);
        }
        i += 1;
    }
    flush(&mut cur, &mut w, &mut raw, &mut orig);
    Words {
        w,
        raw,
        orig,
        quoted,
    }
}

/// Whether `word` (as written) looks like a file or folder name: a name with
/// an extension (`notes.txt`, `config.json.bak`) or a path (`data/raw`).
fn is_file_like(word: &str) -> bool {
    if word.starts_with(QUOTE_MARK) || word.contains("://") || word.len() > 200 {
        return false;
    }
    let ok_chars = word
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    if !ok_chars || word.starts_with('-') {
        return false;
    }
    if word.contains('/') {
        return word.chars().any(char::is_alphanumeric) && !word.split('/').any(|p| p == "..");
    }
    match word.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty()
                && !ext.is_empty()
                && ext.len() <= 8
                && ext.chars().all(|c| c.is_ascii_alphanumeric())
                && ext.chars().any(|c| c.is_ascii_alphabetic())
                && stem.chars().any(char::is_alphanumeric)
        }
        None => false,
    }
}

/// Words that introduce a folder or file name ("the folder out", "a
/// directory called build", "the archive folder").
const FOLDER_WORDS: &[&str] = &[
    "folder",
    "folders",
    "directory",
    "directories",
    "dir",
    "dirs",
    "subfolder",
    "subdirectory",
];
const NAMING_WORDS: &[&str] = &["called", "named"];

/// Words that are never names even after "folder"/"called".
const NOT_NAMES: &[&str] = &[
    "a",
    "an",
    "the",
    "it",
    "its",
    "in",
    "into",
    "to",
    "and",
    "with",
    "of",
    "named",
    "called",
    "containing",
    "that",
    "this",
    "is",
    "please",
    "for",
    "me",
    "my",
    "there",
    "here",
    "workspace",
    "current",
    "new",
    "empty",
    "file",
    "files",
    "everything",
    "all",
    "both",
    "anything",
    "nothing",
    "then",
    "inside",
];

/// The names a clause mentions, in order, with their word positions.
fn names(ws: &Words) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let n = ws.w.len();
    for i in 0..n {
        let raw = ws.raw[i].trim_start_matches("./").to_string();
        let raw = raw.trim_start_matches("/workspace/").to_string();
        if is_file_like(&raw) {
            out.push((i, raw));
            continue;
        }
        let bare_ok = |j: usize| -> Option<String> {
            let word = ws.raw.get(j)?;
            let low = ws.w.get(j)?;
            let plain = word
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
            (plain
                && !NOT_NAMES.contains(&low.as_str())
                && !FOLDER_WORDS.contains(&low.as_str())
                && !word.starts_with(QUOTE_MARK))
            .then(|| word.clone())
        };
        let low = ws.w[i].as_str();
        if NAMING_WORDS.contains(&low) {
            // "called a, b and c": every plain word of the list (articles too:
            // after "called" a word is a name).
            let mut j = i + 1;
            while let Some(word) = ws.raw.get(j) {
                let plain = !word.is_empty()
                    && word
                        .chars()
                        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/'));
                if !plain || word.starts_with(QUOTE_MARK) {
                    break;
                }
                if !out.iter().any(|(k, _)| *k == j) {
                    out.push((j, word.clone()));
                }
                if ws.orig[j].ends_with(',') {
                    j += 1;
                } else if ws.w.get(j + 1).is_some_and(|x| x == "and") && ws.raw.get(j + 2).is_some()
                {
                    j += 2;
                } else {
                    break;
                }
            }
            continue;
        }
        if FOLDER_WORDS.contains(&low) {
            // "folder out", "folder named out", "called build"; "the
            // directories src and tests".
            let mut j = i + 1;
            if FOLDER_WORDS.contains(&low)
                && ws
                    .w
                    .get(j)
                    .is_some_and(|x| NAMING_WORDS.contains(&x.as_str()))
            {
                continue; // the naming word takes it
            }
            if ws.w.get(j).is_some_and(|x| x == "named" || x == "called") {
                j += 1;
            }
            if let Some(name) = bare_ok(j) {
                if !out.iter().any(|(k, _)| *k == j) {
                    out.push((j, name));
                }
                // More of a list: "src, docs and tests".
                let mut k = j;
                loop {
                    let next = if ws.orig[k].ends_with(',') {
                        k + 1
                    } else if ws.w.get(k + 1).is_some_and(|x| x == "and") {
                        k + 2
                    } else {
                        break;
                    };
                    let stop = ws.w.get(next).is_some_and(|x| x == "then" || crate::plan::VERBS.contains(&x.as_str()));
                    match bare_ok(next) {
                        Some(n) if !stop && (!is_file_like(&n) || low.ends_with('s')) => {
                            if !out.iter().any(|(q, _)| *q == next) {
                                out.push((next, n));
                            }
                            k = next;
                        }
                        _ => break,
                    }
                }
                continue;
            }
            // "the archive folder": the word before.
            if FOLDER_WORDS.contains(&low) && i >= 1 {
                if let Some(name) = bare_ok(i - 1) {
                    if !out.iter().any(|(k, _)| *k == i - 1) {
                        out.push((i - 1, name));
                    }
                }
            }
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

/// Polite openings dropped before the verb.
const OPENINGS: &[&[&str]] = &[
    &["could", "you"],
    &["can", "you"],
    &["would", "you"],
    &["please"],
    &["i", "need", "you", "to"],
    &["i", "want", "you", "to"],
    &["i", "would", "like", "you", "to"],
    &["now"],
    &["also"],
    &["just"],
    &["and"],
];

/// Where a task is while its clauses are read one after the other.
#[derive(Debug, Default)]
pub struct Reader {
    /// The last name a clause mentioned ("it" refers to it).
    last_name: Option<String>,
    /// A fact was remembered earlier in the task ("tell me ..." recalls it).
    remembered: bool,
    /// The previous clause produced data that "it" can refer to.
    have_data: bool,
    /// The key of the last fact remembered ("recall it").
    last_key: Option<String>,
    /// A text composed by a clause that named no file ("write a poem about
    /// rain"), for a later clause to save or print ("and save it in rain.txt").
    pending: Option<Text>,
}

/// The steps of `task`'s clauses, or `None` for a clause not recognised
/// (index-aligned with `clauses`).
pub fn read_task(clauses: &[String]) -> Vec<Option<Vec<Step>>> {
    let mut r = Reader::default();
    let mut out: Vec<Option<Vec<Step>>> = clauses.iter().map(|c| r.clause(c)).collect();
    // A composed text no clause saved is shown to the user.
    if let Some(text) = r.pending.take() {
        if let Some(Some(last)) = out.iter_mut().rev().find(|s| s.is_some()) {
            last.push(Step::Print { text });
        }
    }
    out
}

/// Every name the clauses of `task` mention, in order, once each.
pub fn task_names(task: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for c in &crate::plan::clauses(task) {
        for (_, n) in names(&split_words(c)) {
            if !out.contains(&n) {
                out.push(n);
            }
        }
    }
    out
}

fn has(w: &[String], word: &str) -> bool {
    w.iter().any(|x| x == word)
}

fn has_any(w: &[String], words: &[&str]) -> bool {
    w.iter().any(|x| words.contains(&x.as_str()))
}

/// "one", "two", ... "ten" or a number.
fn number_word(s: &str) -> Option<f64> {
    const N: &[&str] = &[
        "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
    ];
    N.iter()
        .position(|n| *n == s)
        .map(|i| i as f64)
        .or_else(|| s.parse::<f64>().ok().filter(|x| x.is_finite() && *x >= 0.0))
}

/// The ordinal of a line: "first" → 0, "second" → 1, "last" → MAX.
fn ordinal(s: &str) -> Option<usize> {
    const O: &[&str] = &[
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth",
    ];
    if s == "last" || s == "final" {
        return Some(usize::MAX);
    }
    O.iter().position(|o| *o == s)
}

/// "its first line", "the last line of X", "the first 2 lines", "the
/// contents" → a selection of the last result.
fn selection(w: &[String]) -> Option<Select> {
    for i in 0..w.len() {
        if w[i] == "line" {
            if let Some(k) = i.checked_sub(1).and_then(|j| ordinal(&w[j])) {
                return Some(Select::Line(k));
            }
        }
        if w[i] == "lines" && i >= 2 && (w[i - 2] == "first" || w[i - 2] == "top") {
            if let Some(n) = number_word(&w[i - 1]) {
                return Some(Select::FirstLines(n as usize));
            }
        }
    }
    None
}

impl Reader {
    /// The steps of one clause, or `None` when it is not recognised.
    pub fn clause(&mut self, clause: &str) -> Option<Vec<Step>> {
        let ws = split_words(clause);
        let mut start = 0;
        'open: loop {
            for o in OPENINGS {
                if ws.w.len() >= start + o.len()
                    && ws.w[start..start + o.len()]
                        .iter()
                        .zip(o.iter())
                        .all(|(a, b)| a == b)
                {
                    start += o.len();
                    continue 'open;
                }
            }
            break;
        }
        let w: Vec<String> = ws.w[start..].to_vec();
        let found = names(&ws);
        let names: Vec<String> = found
            .iter()
            .filter(|(i, _)| *i >= start)
            .map(|(_, n)| n.clone())
            .collect();
        let quoted = ws.quoted.clone();
        let verb = w.first().map(String::as_str).unwrap_or("");
        let refers = has_any(&w, &["it", "its", "them", "that"]) && names.is_empty();
        let subject: Option<String> =
            names
                .first()
                .cloned()
                .or_else(|| if refers { self.last_name.clone() } else { None });
        let steps = self.steps(&ws, start, verb, &w, &names, &quoted, subject, refers);
        if let Some(n) = names.last() {
            self.last_name = Some(n.clone());
        }
        if let Some(s) = &steps {
            for step in s {
                if let Step::Remember { key, .. } = step {
                    self.remembered = true;
                    self.last_key = Some(key.clone());
                }
            }
            self.have_data = s.last().is_some_and(|s| {
                matches!(
                    s,
                    Step::Read { .. } | Step::Recall { .. } | Step::List { .. }
                )
            });
        }
        steps
    }

    #[allow(clippy::too_many_arguments)]
    fn steps(
        &mut self,
        ws: &Words,
        start: usize,
        verb: &str,
        w: &[String],
        names: &[String],
        quoted: &[String],
        subject: Option<String>,
        refers: bool,
    ) -> Option<Vec<Step>> {
        let second = w.get(1).map(String::as_str).unwrap_or("");
        let text_of_quote = |k: usize| quoted.get(k).cloned();
        let first_quote = text_of_quote(0);
        let is_folder_clause = has_any(w, FOLDER_WORDS);

        // exit / quit / stop / finish, optionally "with code N".
        if ["exit", "quit", "stop", "finish", "end"].contains(&verb) && w.len() <= 5 {
            let code = w
                .iter()
                .position(|x| x == "code")
                .and_then(|i| w.get(i + 1))
                .and_then(|c| c.parse::<i64>().ok());
            return Some(
                code.map(|code| vec![Step::Exit { code }])
                    .unwrap_or_default(),
            );
        }
        // wait / sleep N seconds|minutes.
        if ["wait", "sleep", "pause"].contains(&verb) {
            let i = w
                .iter()
                .position(|x| x.starts_with("second") || x.starts_with("minute") || x == "s")?;
            let n = number_word(w.get(i.checked_sub(1)?)?)?;
            let seconds = if w[i].starts_with("minute") {
                n * 60.0
            } else {
                n
            };
            return Some(vec![Step::Sleep { seconds }]);
        }
        // remember (that) X [is Y]
        if ["remember", "memorise", "memorize", "note"].contains(&verb)
            && names.is_empty()
            && !has(w, "down")
        {
            let raw: Vec<&str> = ws.raw[start + 1..].iter().map(String::as_str).collect();
            let mut fact: Vec<&str> = raw.clone();
            if fact.first().is_some_and(|f| f.eq_ignore_ascii_case("that")) {
                fact.remove(0);
            }
            if fact.is_empty() {
                return None;
            }
            let value = fact.join(" ");
            let key = match fact.iter().position(|x| {
                ["is", "are", "was", "=", "equals"].contains(&x.to_lowercase().as_str())
            }) {
                Some(k) if k > 0 => fact[..k].join(" "),
                _ => value.clone(),
            };
            return Some(vec![Step::Remember { key, value }]);
        }
        // recall / tell me (after something was remembered) / what is X.
        let asks = verb == "recall"
            || (self.remembered
                && names.is_empty()
                && quoted.is_empty()
                && ["tell", "what", "what's", "say", "print", "show"].contains(&verb)
                && !refers);
        if asks {
            let skip = [
                "recall", "tell", "me", "what", "what's", "say", "print", "show", "and", "it",
            ];
            let q: Vec<&str> = ws.raw[start..]
                .iter()
                .map(String::as_str)
                .filter(|x| !skip.contains(&x.to_lowercase().as_str()))
                .collect();
            let pronoun_only = q
                .iter()
                .all(|x| ["it", "that", "this", "them"].contains(&x.to_lowercase().as_str()));
            let query = match &self.last_key {
                Some(k) if pronoun_only => k.clone(),
                _ if q.is_empty() => ws.raw[start..].join(" "),
                _ => q.join(" "),
            };
            let mut s = vec![Step::Recall { query }];
            if verb != "recall" || has_any(w, &["print", "show", "tell"]) {
                s.push(Step::Print {
                    text: Text::FromLast(Select::All),
                });
            }
            return Some(s);
        }

        // make a folder / create the directory X.
        if is_folder_clause
            && ["create", "make", "add", "mkdir", "need", "i"].contains(&verb)
            && !has_any(w, &["list", "files"])
        {
            return Some(
                names
                    .iter()
                    .map(|n| Step::Mkdir { path: n.clone() })
                    .collect::<Vec<_>>(),
            )
            .filter(|v| !v.is_empty());
        }

        // list the files / what files are there / which files are in src.
        let lists = verb == "list"
            || ls_question(w)
            || (["show", "display", "print"].contains(&verb)
                && has(w, "files")
                && !names.iter().any(|n| is_file_like(n) && !n.contains('/')));
        let saves_listing = ["save", "write", "put", "store"].contains(&verb);
        if lists && saves_listing {
            let target = names.iter().rev().find(|n| is_file_like(n))?.clone();
            return Some(vec![
                Step::List { path: None },
                Step::Write { path: target, text: Text::FromLast(Select::All), append: false },
            ]);
        }
        if lists {
            let folder = names
                .iter()
                .find(|n| !is_file_like(n) || n.contains('/'))
                .cloned()
                .or_else(|| {
                    // "which files are in src?": the word after "in", unless the workspace.
                    let i = w.iter().rposition(|x| x == "in" || x == "inside")?;
                    let word = ws.raw.get(start + i + 1)?.clone();
                    let low = word.to_lowercase();
                    (!NOT_NAMES.contains(&low.as_str()) && !low.starts_with(QUOTE_MARK))
                        .then_some(word)
                });
            return Some(vec![
                Step::List { path: folder },
                Step::Print {
                    text: Text::FromLast(Select::All),
                },
            ]);
        }

        // delete / remove / erase / throw away / get rid of.
        let deletes = ["delete", "remove", "erase", "rm", "del", "discard", "trash"]
            .contains(&verb)
            || (verb == "throw" && second == "away")
            || (verb == "get" && second == "rid");
        if deletes {
            let targets: Vec<String> = if names.is_empty() {
                subject.into_iter().collect()
            } else {
                names.to_vec()
            };
            if targets.is_empty() {
                return None;
            }
            let recursive =
                has_any(w, &["everything", "recursively", "contents", "all"]) || is_folder_clause;
            return Some(
                targets
                    .into_iter()
                    .map(|path| Step::Delete { path, recursive })
                    .collect(),
            );
        }

        // copy / duplicate / back up / make a copy of X called Y.
        let copies = ["copy", "duplicate", "backup", "clone"].contains(&verb)
            || (verb == "back" && second == "up")
            || (["make", "create", "save"].contains(&verb) && has(w, "copy"));
        // move / rename.
        let moves = ["move", "rename", "mv"].contains(&verb);
        if copies || moves {
            // "copy a.txt to b.txt", or "save a copy of it in b.txt" (it: the
            // file named before).
            let pronoun_at = w.iter().position(|x| ["it", "its", "this", "that", "them"].contains(&x.as_str()));
            let (source, mut target) = match names {
                [s, t, ..] => (s.clone(), t.clone()),
                // "copy data.csv into it": the pronoun after the name is the
                // target (a folder named before).
                [n] if pronoun_at.is_some_and(|p| found_after(ws, start, n, p)) => {
                    let folder = self.last_name.clone()?;
                    let base = n.rsplit('/').next().unwrap_or(n).to_string();
                    (n.clone(), format!("{}/{base}", folder.trim_end_matches('/')))
                }
                [t] if pronoun_at.is_some() => (self.last_name.clone()?, t.clone()),
                _ => return None,
            };
            let sel = selection(w);
            if target == source {
                return None;
            }
            // "into the archive folder": a folder word makes the target a folder.
            let into_folder = is_folder_clause && !is_file_like(&target);
            if into_folder || (moves && target.ends_with('/')) {
                let base = source.rsplit('/').next().unwrap_or(&source).to_string();
                target = format!("{}/{base}", target.trim_end_matches('/'));
            }
            let mut s = Vec::new();
            if !(self.have_data && self.last_name.as_deref() == Some(source.as_str())) {
                s.push(Step::Read {
                    path: Path::Named(source.clone()),
                });
            }
            s.push(Step::Write {
                path: target,
                text: Text::FromLast(sel.unwrap_or(Select::All)),
                append: false,
            });
            if moves {
                s.push(Step::Delete {
                    path: source,
                    recursive: false,
                });
            }
            return Some(s);
        }

        // replace 'a' with 'b' in X (a word inside the file).
        if verb == "replace" && quoted.len() == 2 && !has(w, "contents") {
            let path = names.first().cloned().or(subject)?;
            return Some(vec![
                Step::Read {
                    path: Path::Named(path.clone()),
                },
                Step::Write {
                    path,
                    text: Text::FromLast(Select::Replace {
                        from: quoted[0].clone(),
                        to: quoted[1].clone(),
                    }),
                    append: false,
                },
            ]);
        }

        // count the lines / words, how many lines does X have.
        let counts = verb == "count"
            || (has(w, "how") && has(w, "many"))
            || w.windows(2).any(|p| p[0] == "number" && p[1] == "of");
        if counts && has_any(w, &["word", "words", "line", "lines"]) {
            let sel = if has_any(w, &["word", "words"]) {
                Select::WordCount
            } else if has_any(w, &["line", "lines"]) {
                Select::LineCount
            } else {
                return None;
            };
            let path = names.first().cloned().or(subject)?;
            return Some(vec![
                Step::Read {
                    path: Path::Named(path),
                },
                Step::Print {
                    text: Text::FromLast(sel),
                },
            ]);
        }

        // summarise X [into/to Y].
        if ["summarise", "summarize", "summarise:", "sum"].contains(&verb) {
            let source = names.first().cloned().or(subject.clone());
            let mut s = Vec::new();
            if let Some(src) = &source {
                if !(refers && self.have_data && names.is_empty()) {
                    s.push(Step::Read {
                        path: Path::Named(src.clone()),
                    });
                }
            } else if !self.have_data {
                return None;
            }
            let text = Text::Compose {
                what: "a short summary of this text".into(),
                lines: 0,
                from_last: true,
            };
            match names.get(1) {
                Some(t) => s.push(Step::Write {
                    path: t.clone(),
                    text,
                    append: false,
                }),
                None => s.push(Step::Print { text }),
            }
            return Some(s);
        }

        // append / add 'x' to (the end of) X / insert 'x' at the end of X.
        let appends = ["append", "insert"].contains(&verb)
            || (verb == "add" && (has(w, "to") || has(w, "end")));
        if appends {
            let path = names.last().cloned().or(subject)?;
            let text = match first_quote {
                Some(q) => q,
                None => literal_between(ws, start + 1, &["to", "at", "onto"])?,
            };
            return Some(vec![Step::Write {
                path,
                text: Text::Exact(format!("{text}\n")),
                append: true,
            }]);
        }

        // read X [and print it] / open X.
        if ["read", "open", "load"].contains(&verb) {
            let path = match names.first().cloned().or(subject) {
                Some(n) => Path::Named(n),
                None if has(w, "file") => Path::OnlyListed,
                None => return None,
            };
            let mut s = Vec::new();
            if path == Path::OnlyListed {
                s.push(Step::List { path: None });
            }
            s.push(Step::Read { path });
            if has_any(w, &["print", "show", "display"]) {
                s.push(Step::Print {
                    text: Text::FromLast(selection(w).unwrap_or(Select::All)),
                });
            }
            return Some(s);
        }

        // print / show / display / output / say / tell / what's in / what does X say.
        let shows = [
            "print", "show", "display", "output", "echo", "say", "tell", "type", "cat",
        ]
        .contains(&verb)
            || ((verb == "what's" || verb == "whats") && (has(w, "in") || has(w, "inside")))
            || (verb == "what"
                && (has_any(w, &["in", "inside", "contain", "contains", "say", "says"])))
            || (["what", "what's", "whats", "which"].contains(&verb) && selection(w).is_some());
        if shows {
            if let Some(q) = first_quote {
                return Some(vec![Step::Print {
                    text: Text::Exact(q),
                }]);
            }
            // "show me what is in the workspace / the docs folder".
            if (is_folder_clause || has(w, "workspace"))
                && has_any(w, &["in", "inside", "of"])
                && !names.iter().any(|n| is_file_like(n))
            {
                let folder = names.first().cloned();
                return Some(vec![
                    Step::List { path: folder },
                    Step::Print {
                        text: Text::FromLast(Select::All),
                    },
                ]);
            }
            let sel = selection(w).unwrap_or(Select::All);
            if let Some(path) = names.first().cloned() {
                return Some(vec![
                    Step::Read {
                        path: Path::Named(path),
                    },
                    Step::Print {
                        text: Text::FromLast(sel),
                    },
                ]);
            }
            if refers && names.is_empty() {
                if let Some(text) = self.pending.take() {
                    return Some(vec![Step::Print { text }]);
                }
            }
            if refers || has_any(w, &["contents", "content", "result"]) {
                if self.have_data {
                    return Some(vec![Step::Print {
                        text: Text::FromLast(sel),
                    }]);
                }
                let path = subject?;
                return Some(vec![
                    Step::Read {
                        path: Path::Named(path),
                    },
                    Step::Print {
                        text: Text::FromLast(sel),
                    },
                ]);
            }
            // "say hi", "output the word banana", "print hello to the user";
            // never "tell me the port" (a question, left to the model).
            if ["tell", "what", "what's", "whats", "which", "show", "display"].contains(&verb) {
                return None;
            }
            let mut lit = literal_between(ws, start + 1, &[])?;
            for audience in [
                " to the user",
                " to me",
                " for me",
                " to the screen",
                " on the screen",
                " on screen",
                " to stdout",
            ] {
                if lit.to_lowercase().ends_with(audience) && lit.len() > audience.len() {
                    lit.truncate(lit.len() - audience.len());
                }
            }
            return Some(vec![Step::Print {
                text: Text::Exact(lit),
            }]);
        }

        // write / save / put / store / jot down / create X with / overwrite X with.
        // empty / clear / truncate X: nothing in it.
        if ["empty", "clear", "truncate", "blank"].contains(&verb) && !is_folder_clause {
            let path = names.first().cloned().or(subject)?;
            return Some(vec![Step::Write { path, text: Text::Exact(String::new()), append: false }]);
        }
        let writes = [
            "write",
            "compose",
            "draft",
            "generate",
            "save",
            "put",
            "store",
            "jot",
            "record",
            "create",
            "make",
            "overwrite",
            "set",
            "fill",
            "log",
            "touch",
        ]
        .contains(&verb)
            || (verb == "replace" && has(w, "contents"));
        if writes {
            // Several "'text' to name" pairs: "write 'alpha' to a.txt and 'beta' to b.txt".
            if quoted.len() >= 2 && names.len() == quoted.len() {
                return Some(
                    quoted
                        .iter()
                        .zip(names)
                        .map(|(q, n)| Step::Write {
                            path: n.clone(),
                            text: Text::Exact(q.clone()),
                            append: false,
                        })
                        .collect(),
                );
            }
            let path = match names.last().cloned() {
                Some(n) => n,
                None if refers && self.pending.is_some() && self.last_name.is_none() => return None,
                None if refers => subject?,
                None => {
                    // "write a poem about rain" (and save it later): composed
                    // now, placed by the clause that names the file.
                    if first_quote.is_none() && self.pending.is_none() {
                        if let Some(t @ Text::Compose { .. }) = composed(ws, start, w, self.have_data) {
                            self.pending = Some(t);
                            return Some(Vec::new());
                        }
                    }
                    return None;
                }
            };
            let pronoun = has_any(w, &["it", "them", "this", "that"]);
            let pending = if pronoun { self.pending.take() } else { None };
            let text = if let Some(t) = pending {
                t
            } else if let Some(q) = first_quote {
                Text::Exact(q)
            } else if has(w, "empty") {
                Text::Exact(String::new())
            } else if let Some(sel) = selection(w) {
                Text::FromLast(sel)
            } else if let Some(t) = after_with(ws, start, w) {
                t
            } else if (refers || has_any(w, &["contents", "content"]))
                && self.have_data
                && !has_any(w, &["summary", "about"])
            {
                Text::FromLast(Select::All)
            } else if let Some(lit) =
                literal_between(ws, start + 1, &["to", "in", "into", "as", "on"])
            {
                Text::Exact(lit)
            } else {
                composed(ws, start, w, self.have_data)?
            };
            // "write the first line of todo.txt to top.txt": read the source first.
            let mut s = Vec::new();
            if let (Text::FromLast(_), [src, .., _]) = (&text, names) {
                if !(self.have_data && self.last_name.as_deref() == Some(src.as_str())) {
                    s.push(Step::Read {
                        path: Path::Named(src.clone()),
                    });
                }
            }
            // "make a note in todo.txt", "jot down 'x' in y.txt", "log 'x' to
            // z.log": a note is added to what is there, never replacing it.
            let noting =
                has_any(w, &["note", "jot", "log"]) && !has_any(w, &["overwrite", "replace"]);
            match (&text, noting) {
                (Text::Exact(t), true) => s.push(Step::Write {
                    path,
                    text: Text::Exact(format!("{t}\n")),
                    append: true,
                }),
                _ => s.push(Step::Write {
                    path,
                    text,
                    append: false,
                }),
            }
            return Some(s);
        }
        None
    }
}

/// Whether `name` stands in the clause before the word at `pronoun`
/// (positions within the clause after its opening words).
fn found_after(ws: &Words, start: usize, name: &str, pronoun: usize) -> bool {
    ws.raw[start..].iter().position(|x| x.trim_start_matches("./") == name).is_some_and(|i| i < pronoun)
}

/// The text after "with" / "containing" that follows the target name: a
/// list of items ("with three items: eggs, milk, bread") one per line, or a
/// short literal. Filler words ("the text", "the items", "N items:") are
/// skipped.
fn after_with(ws: &Words, start: usize, w: &[String]) -> Option<Text> {
    let k = w.iter().position(|x| x == "with" || x == "containing")?;
    // Only after a name ("a file called x.txt with ..."), not "a list with".
    if !ws.raw[start..start + k].iter().any(|x| is_file_like(x)) {
        return None;
    }
    let fillers = ["the", "text", "content", "contents", "words", "word", "items", "item", "lines", "line", "following"];
    let mut rest: Vec<&str> = ws.orig[start + k + 1..].iter().map(String::as_str).collect();
    while let Some(first) = rest.first() {
        let low = first.trim_end_matches(':').to_lowercase();
        if fillers.contains(&low.as_str()) || number_word(&low).is_some() {
            rest.remove(0);
        } else {
            break;
        }
    }
    if rest.is_empty() || rest.iter().any(|x| x.starts_with(QUOTE_MARK)) {
        return None;
    }
    let text = rest.join(" ").trim_end_matches(['.', '!', '?']).to_string();
    let items = list_items(&text);
    if items.len() >= 2 {
        return Some(Text::Exact(items.join("\n")));
    }
    (rest.len() <= 8).then_some(Text::Exact(text))
}

/// The items of "milk, eggs and bread": split at commas, semicolons and "and".
fn list_items(text: &str) -> Vec<String> {
    text.split([',', ';'])
        .flat_map(|p| p.split(" and "))
        .map(|x| x.trim().trim_start_matches("and ").trim().to_string())
        .filter(|x| !x.is_empty())
        .collect()
}

/// "what files are there?", "which files are in src?", "what is in the
/// workspace?".
fn ls_question(w: &[String]) -> bool {
    let q = ["what", "which", "what's", "whats"];
    w.first().is_some_and(|f| q.contains(&f.as_str()))
        && has_any(w, &["files", "folders", "entries"])
        || (w.first().is_some_and(|f| q.contains(&f.as_str()))
            && has(w, "workspace")
            && has(w, "in"))
        || (has(w, "list") && has_any(w, &["files", "everything", "contents", "workspace"]))
}

/// The short literal after the verb and before a preposition that leads to
/// the target ("save the word hello in word.txt" → "hello"; "write hello
/// world to hw.txt" → "hello world"; "say hi" → "hi"). Filler words ("the
/// word", "the number", "the text", "down") are skipped. At most 8 words.
fn literal_between(ws: &Words, from: usize, stops: &[&str]) -> Option<String> {
    let mut i = from;
    let fillers = [
        "the", "word", "number", "text", "line", "date", "string", "value", "down", "out",
        "saying", "that", "says",
    ];
    while i < ws.w.len() && fillers.contains(&ws.w[i].as_str()) {
        i += 1;
    }
    let mut end = ws.w.len();
    if !stops.is_empty() {
        // The last stop word before the last name.
        end = (i..ws.w.len())
            .rev()
            .find(|&k| stops.contains(&ws.w[k].as_str()))?;
    }
    if end <= i || end - i > 8 {
        return None;
    }
    let words: Vec<&str> = ws.raw[i..end].iter().map(String::as_str).collect();
    if words
        .iter()
        .any(|x| x.starts_with(QUOTE_MARK) || is_file_like(x))
    {
        return None;
    }
    let text = words.join(" ");
    let low = text.to_lowercase();
    if ["it", "this", "that", "them", "these", "those"].contains(&low.as_str()) {
        return None;
    }
    // "a haiku about", "some notes": composing, not copying.
    if low.starts_with("a ")
        || low.starts_with("an ")
        || low.starts_with("some ")
        || low.contains(" about ")
    {
        return None;
    }
    Some(text)
}

/// Text that must be composed: "a haiku about the sea", "a one-line summary
/// of it", "a shopping list with milk, eggs and bread" (items listed become
/// one line each, exactly).
fn composed(ws: &Words, start: usize, w: &[String], have_data: bool) -> Option<Text> {
    let rest = &w[1.min(w.len())..];
    let art = rest.first().map(String::as_str)?;
    if !["a", "an", "some", "the"].contains(&art) && !has(rest, "about") {
        return None;
    }
    // The object: from the article up to the last "to/into/in NAME".
    let end = (1..w.len())
        .rev()
        .find(|&k| ["to", "into", "in", "as"].contains(&w[k].as_str()) && k + 1 < w.len())
        .unwrap_or(w.len());
    let raw: Vec<&str> = ws.orig[start + 1..start + end]
        .iter()
        .map(String::as_str)
        .collect();
    let what = raw.join(" ");
    let low = what.to_lowercase();
    // "a list with milk, eggs and bread": the items, one per line.
    if let Some(k) = ["with ", "of ", "containing "]
        .iter()
        .find_map(|p| low.find(&format!("list {p}")).map(|i| i + 5 + p.len()))
    {
        let items = list_items(&what[k..]);
        if items.len() >= 2 {
            return Some(Text::Exact(items.join("\n")));
        }
    }
    let lines = if low.contains("haiku") {
        3
    } else if low.contains("one-line")
        || low.contains("one line")
        || low.contains("a line")
        || low.contains("sentence")
    {
        1
    } else {
        0
    };
    let from_last =
        have_data && (low.contains(" it") || low.contains("summary") || low.contains(" this"));
    Some(Text::Compose {
        what,
        lines,
        from_last,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(task: &str) -> Vec<Option<Vec<Step>>> {
        read_task(&crate::plan::clauses(task))
    }

    fn exact(s: &str) -> Text {
        Text::Exact(s.into())
    }

    #[test]
    fn names_come_from_the_words() {
        let ws = split_words("create the folder out, then write 'x' to out/a.txt");
        let n: Vec<String> = names(&ws).into_iter().map(|(_, n)| n).collect();
        assert_eq!(n, ["out", "out/a.txt"]);
        let ws = split_words("move report.txt into the archive folder");
        assert_eq!(
            names(&ws).into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
            ["report.txt", "archive"]
        );
        let ws = split_words("make a directory called build");
        assert_eq!(
            names(&ws).into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
            ["build"]
        );
        assert!(!is_file_like("e.g."));
        assert!(!is_file_like("3.5"));
        assert!(!is_file_like("https://example.com/a.txt"));
        assert!(is_file_like("config.json.bak"));
        assert!(!is_file_like("../etc/passwd"));
    }

    #[test]
    fn writes_take_the_quoted_text_or_a_short_literal() {
        assert_eq!(
            steps("write the text 'hello from aos' to greeting.txt")[0],
            Some(vec![Step::Write {
                path: "greeting.txt".into(),
                text: exact("hello from aos"),
                append: false
            }])
        );
        assert_eq!(
            steps("save the number 42 in answer.txt")[0],
            Some(vec![Step::Write {
                path: "answer.txt".into(),
                text: exact("42"),
                append: false
            }])
        );
        assert_eq!(
            steps("write hello world to hw.txt")[0],
            Some(vec![Step::Write {
                path: "hw.txt".into(),
                text: exact("hello world"),
                append: false
            }])
        );
        assert_eq!(
            steps("write 'alpha' to a.txt and 'beta' to b.txt")[0],
            Some(vec![
                Step::Write {
                    path: "a.txt".into(),
                    text: exact("alpha"),
                    append: false
                },
                Step::Write {
                    path: "b.txt".into(),
                    text: exact("beta"),
                    append: false
                }
            ])
        );
        assert_eq!(
            steps("append the line 'done' to todo.txt")[0],
            Some(vec![Step::Write {
                path: "todo.txt".into(),
                text: exact("done\n"),
                append: true
            }])
        );
        match &steps("write a haiku about the sea to haiku.txt, then exit")[..] {
            [Some(s), Some(e)] => {
                assert!(
                    matches!(&s[0], Step::Write { path, text: Text::Compose { lines: 3, .. }, .. } if path == "haiku.txt"),
                    "{s:?}"
                );
                assert!(e.is_empty());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            steps("put a shopping list with milk, eggs and bread into list.txt")[0],
            Some(vec![Step::Write {
                path: "list.txt".into(),
                text: exact("milk\neggs\nbread"),
                append: false
            }])
        );
    }

    #[test]
    fn copies_and_moves_read_first_and_write_only_the_target() {
        assert_eq!(
            steps("move draft.txt to final.txt")[0],
            Some(vec![
                Step::Read {
                    path: Path::Named("draft.txt".into())
                },
                Step::Write {
                    path: "final.txt".into(),
                    text: Text::FromLast(Select::All),
                    append: false
                },
                Step::Delete {
                    path: "draft.txt".into(),
                    recursive: false
                },
            ])
        );
        let s = steps("move report.txt into the archive folder");
        assert!(
            matches!(&s[0].as_ref().unwrap()[1], Step::Write { path, .. } if path == "archive/report.txt"),
            "{s:?}"
        );
        let s = steps("copy the last line of notes.txt to last.txt");
        assert!(
            matches!(
                &s[0].as_ref().unwrap()[1],
                Step::Write {
                    text: Text::FromLast(Select::Line(usize::MAX)),
                    ..
                }
            ),
            "{s:?}"
        );
    }

    #[test]
    fn pronouns_refer_to_the_last_name_and_unknown_clauses_are_left_to_the_model() {
        let s = steps("read notes.txt, then delete it");
        assert_eq!(
            s[1],
            Some(vec![Step::Delete {
                path: "notes.txt".into(),
                recursive: false
            }])
        );
        let s = steps("read notes.txt and print its first line");
        assert_eq!(
            s[1],
            Some(vec![Step::Print {
                text: Text::FromLast(Select::Line(0))
            }])
        );
        let s = steps("remember that the build server is ci-3, then recall what the build server is and print it");
        assert_eq!(
            s[0],
            Some(vec![Step::Remember {
                key: "the build server".into(),
                value: "the build server is ci-3".into()
            }])
        );
        assert!(matches!(&s[1].as_ref().unwrap()[0], Step::Recall { .. }));
        assert_eq!(
            steps("fetch https://example.com and tell me its title")[0],
            None
        );
        assert_eq!(
            steps("create three folders called a, b and c")[0],
            Some(vec![
                Step::Mkdir { path: "a".into() },
                Step::Mkdir { path: "b".into() },
                Step::Mkdir { path: "c".into() }
            ])
        );
        assert_eq!(
            steps("make a note in todo.txt that says 'call the bank'")[0],
            Some(vec![Step::Write {
                path: "todo.txt".into(),
                text: exact("call the bank\n"),
                append: true
            }])
        );
        let s = steps("remember that the api key name is PROD_KEY, then recall it and print it");
        assert_eq!(
            s[1],
            Some(vec![Step::Recall {
                query: "the api key name".into()
            }])
        );
        assert_eq!(
            steps("what's the third line of poem.txt?")[0]
                .as_ref()
                .unwrap()[1],
            Step::Print {
                text: Text::FromLast(Select::Line(2))
            }
        );
        let s = steps("Write a short poem about rain and save it in rain.txt");
        assert_eq!(s[0], Some(vec![]));
        assert!(matches!(&s[1].as_ref().unwrap()[..], [Step::Write { path, text: Text::Compose { .. }, .. }] if path == "rain.txt"), "{s:?}");
        assert_eq!(steps("Read config.yaml and tell me the port")[1], None);
        assert_eq!(steps("Tell me how many words are in essay.txt")[0].as_ref().unwrap()[1], Step::Print { text: Text::FromLast(Select::WordCount) });
        assert_eq!(steps("remove the directory cache and everything in it")[0], Some(vec![Step::Delete { path: "cache".into(), recursive: true }]));
        assert_eq!(steps("Create the directories src and tests")[0], Some(vec![Step::Mkdir { path: "src".into() }, Step::Mkdir { path: "tests".into() }]));
        assert_eq!(
            steps("Create a new folder called backups and copy data.csv into it")[1].as_ref().unwrap()[1],
            Step::Write { path: "backups/data.csv".into(), text: Text::FromLast(Select::All), append: false }
        );
        assert_eq!(
            steps("Create a file called todo.txt with three items: eggs, milk, bread")[0],
            Some(vec![Step::Write { path: "todo.txt".into(), text: exact("eggs\nmilk\nbread"), append: false }])
        );
        assert_eq!(steps("Empty the file log.txt")[0], Some(vec![Step::Write { path: "log.txt".into(), text: exact(""), append: false }]));
        assert_eq!(steps("Save the list of files to files.txt")[0].as_ref().unwrap()[1], Step::Write { path: "files.txt".into(), text: Text::FromLast(Select::All), append: false });
        assert_eq!(
            steps("Print hello to the user")[0],
            Some(vec![Step::Print {
                text: exact("hello")
            }])
        );
        assert_eq!(
            steps("list the files")[0],
            Some(vec![
                Step::List { path: None },
                Step::Print {
                    text: Text::FromLast(Select::All)
                }
            ])
        );
        assert_eq!(
            steps("which files are in src?")[0].as_ref().unwrap()[0],
            Step::List {
                path: Some("src".into())
            }
        );
        assert_eq!(
            steps("show me what is in the docs folder")[0]
                .as_ref()
                .unwrap()[0],
            Step::List {
                path: Some("docs".into())
            }
        );
        assert_eq!(
            steps("display what's inside the workspace")[0]
                .as_ref()
                .unwrap()[0],
            Step::List { path: None }
        );
    }
}

/// Prints the frames of the tuning sets' tasks (`cargo test -p aos-llm-local
/// --lib frame::dump -- --ignored --nocapture`); the held-out set is never
/// looked at this way.
#[cfg(test)]
#[test]
#[ignore]
fn dump() {
    for f in ["outcome.jsonl", "outcome-extra.jsonl"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../evals")
            .join(f);
        for l in std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let task = v["task"].as_str().unwrap();
            let cl = crate::plan::clauses(task);
            println!(
                "{:<22} {task}\n    {:?}",
                v["id"].as_str().unwrap(),
                read_task(&cl)
            );
        }
    }
}

/// Prints the frames of `AOS_FRAME_TASKS` (one task a line) — for trying
/// phrasings (`cargo test -p aos-llm-local --lib frame::try_phrasings --
/// --ignored --nocapture`).
#[cfg(test)]
#[test]
#[ignore]
fn try_phrasings() {
    let text = std::env::var("AOS_FRAME_TASKS").unwrap_or_default();
    for task in text.lines().filter(|l| !l.trim().is_empty()) {
        println!("{task}\n    {:?}", read_task(&crate::plan::clauses(task)));
    }
}
