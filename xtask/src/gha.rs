//! GitHub Actions as far as `cargo xtask ci rehearse` and the workflow checks need it: a workflow
//! file read into jobs and steps, and GitHub's expression language (`${{ }}`, `if:`), with the
//! status functions, `needs`, `steps`, `matrix`, `fromJSON` and `hashFiles`. Anything a workflow
//! uses that this does not know is an error, never a silent guess.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// One workflow file.
#[derive(Clone, Debug)]
pub struct Workflow {
    /// The file name (`matrix.yml`).
    pub file: String,
    pub name: String,
    pub env: Vec<(String, String)>,
    /// `defaults.run.shell`.
    pub shell: Option<String>,
    pub jobs: Vec<Job>,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub id: String,
    pub needs: Vec<String>,
    pub condition: Option<String>,
    /// `strategy.matrix`, unevaluated.
    pub matrix: Option<Yaml>,
    pub env: Vec<(String, String)>,
    pub shell: Option<String>,
    pub outputs: Vec<(String, String)>,
    pub permissions: Vec<(String, String)>,
    /// `environment.name`, or `environment` when it is a plain string.
    pub environment: Option<String>,
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug)]
pub struct Step {
    pub id: Option<String>,
    pub name: Option<String>,
    pub run: Option<String>,
    pub uses: Option<String>,
    pub with: Vec<(String, String)>,
    pub env: Vec<(String, String)>,
    pub condition: Option<String>,
    pub shell: Option<String>,
    pub continue_on_error: bool,
    pub working_directory: Option<String>,
}

impl Step {
    /// The name GitHub shows: `name`, else `Run <first line>` or `Run <action>`.
    pub fn title(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match (&self.run, &self.uses) {
            (Some(run), _) => format!("Run {}", run.lines().next().unwrap_or("")),
            (_, Some(uses)) => format!("Run {uses}"),
            _ => "(empty step)".to_string(),
        }
    }

    /// The action without its version: `actions/checkout`.
    pub fn action(&self) -> Option<&str> {
        self.uses.as_deref().map(|u| u.split('@').next().unwrap_or(u))
    }
}

impl Workflow {
    #[cfg(test)]
    pub fn load(path: &Path) -> Result<Workflow> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        Workflow::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Workflow> {
        let docs =
            YamlLoader::load_from_str(text).map_err(|e| anyhow::anyhow!("{file}: {e} (fix the YAML)"))?;
        let Some(doc) = docs.into_iter().next() else { bail!("{file}: empty workflow") };
        let at = |what: &str| format!("{file}: {what}");
        check_keys(
            &doc,
            &["name", "on", "permissions", "concurrency", "env", "defaults", "jobs", "run-name"],
            &at("top level"),
        )?;
        let mut jobs = Vec::new();
        let Yaml::Hash(job_map) = &doc["jobs"] else { bail!("{file}: no jobs") };
        for (id, job) in job_map {
            let id = scalar(id).context("a job id")?;
            let at = |what: &str| format!("{file}: job {id}: {what}");
            check_keys(
                job,
                &[
                    "name",
                    "runs-on",
                    "needs",
                    "if",
                    "strategy",
                    "steps",
                    "outputs",
                    "permissions",
                    "environment",
                    "env",
                    "defaults",
                    "concurrency",
                    "timeout-minutes",
                    "continue-on-error",
                ],
                &at("keys"),
            )?;
            let needs = match &job["needs"] {
                Yaml::BadValue => Vec::new(),
                Yaml::Array(a) => a.iter().map(scalar).collect::<Result<_>>()?,
                other => vec![scalar(other)?],
            };
            let matrix = match &job["strategy"] {
                Yaml::BadValue => None,
                s => {
                    check_keys(s, &["matrix", "fail-fast", "max-parallel"], &at("strategy"))?;
                    Some(s["matrix"].clone())
                }
            };
            let environment = match &job["environment"] {
                Yaml::BadValue => None,
                Yaml::Hash(_) => Some(scalar(&job["environment"]["name"])?),
                other => Some(scalar(other)?),
            };
            let mut steps = Vec::new();
            let Yaml::Array(list) = &job["steps"] else { bail!("{}", at("no steps")) };
            for (n, s) in list.iter().enumerate() {
                check_keys(
                    s,
                    &[
                        "id",
                        "name",
                        "run",
                        "uses",
                        "with",
                        "env",
                        "if",
                        "shell",
                        "continue-on-error",
                        "working-directory",
                        "timeout-minutes",
                    ],
                    &at(&format!("step {}", n + 1)),
                )?;
                steps.push(Step {
                    id: opt_scalar(&s["id"])?,
                    name: opt_scalar(&s["name"])?,
                    run: opt_scalar(&s["run"])?,
                    uses: opt_scalar(&s["uses"])?,
                    with: pairs(&s["with"])?,
                    env: pairs(&s["env"])?,
                    condition: opt_scalar(&s["if"])?,
                    shell: opt_scalar(&s["shell"])?,
                    continue_on_error: s["continue-on-error"].as_bool().unwrap_or(false),
                    working_directory: opt_scalar(&s["working-directory"])?,
                });
            }
            jobs.push(Job {
                id: id.clone(),
                needs,
                condition: opt_scalar(&job["if"])?,
                matrix,
                env: pairs(&job["env"])?,
                shell: opt_scalar(&job["defaults"]["run"]["shell"])?,
                outputs: pairs(&job["outputs"])?,
                permissions: pairs(&job["permissions"])?,
                environment,
                steps,
            });
        }
        for job in &jobs {
            for need in &job.needs {
                if !jobs.iter().any(|j| &j.id == need) {
                    bail!("{file}: job {} needs {need}, which does not exist", job.id);
                }
            }
        }
        Ok(Workflow {
            file: file.to_string(),
            name: opt_scalar(&doc["name"])?.unwrap_or_else(|| file.to_string()),
            env: pairs(&doc["env"])?,
            shell: opt_scalar(&doc["defaults"]["run"]["shell"])?,
            jobs,
        })
    }

    pub fn job(&self, id: &str) -> Option<&Job> {
        self.jobs.iter().find(|j| j.id == id)
    }

    /// Every job `id` depends on, directly or through others.
    pub fn ancestors(&self, id: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut todo = vec![id.to_string()];
        while let Some(j) = todo.pop() {
            for need in self.job(&j).map(|j| j.needs.clone()).unwrap_or_default() {
                if !out.contains(&need) {
                    out.push(need.clone());
                    todo.push(need);
                }
            }
        }
        out
    }

    /// The shell a step runs with: its own, the job's default, the workflow's default.
    pub fn shell_of<'a>(&'a self, job: &'a Job, step: &'a Step) -> Option<&'a str> {
        step.shell.as_deref().or(job.shell.as_deref()).or(self.shell.as_deref())
    }
}

/// The command line GitHub's Linux runners use for a `run:` step with this `shell:` (the script's
/// path replaces `{0}`). Without one, bash runs with `-e` only: no pipefail.
pub fn shell_command(shell: Option<&str>) -> Result<Vec<String>> {
    let template = match shell {
        None => "bash -e {0}",
        Some("bash") => "bash --noprofile --norc -eo pipefail {0}",
        Some("sh") => "sh -e {0}",
        Some(custom) if custom.contains("{0}") => custom,
        Some(other) => {
            bail!("shell {other:?} is not one the rehearsal runs (bash, sh, or a command with {{0}})")
        }
    };
    Ok(template.split_whitespace().map(String::from).collect())
}

fn check_keys(y: &Yaml, known: &[&str], at: &str) -> Result<()> {
    if let Yaml::Hash(h) = y {
        for k in h.keys() {
            let k = scalar(k)?;
            if !known.contains(&k.as_str()) {
                bail!("{at}: key {k:?} is not one the rehearsal knows ({})", known.join(", "));
            }
        }
    }
    Ok(())
}

/// A YAML scalar as the string GitHub sees.
pub fn scalar(y: &Yaml) -> Result<String> {
    Ok(match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        other => bail!("expected a scalar, found {other:?}"),
    })
}

fn opt_scalar(y: &Yaml) -> Result<Option<String>> {
    match y {
        Yaml::BadValue => Ok(None),
        other => scalar(other).map(Some),
    }
}

fn pairs(y: &Yaml) -> Result<Vec<(String, String)>> {
    match y {
        Yaml::BadValue | Yaml::Null => Ok(Vec::new()),
        Yaml::Hash(h) => h.iter().map(|(k, v)| Ok((scalar(k)?, scalar(v)?))).collect(),
        Yaml::String(s) => Ok(vec![(s.clone(), String::new())]),
        other => bail!("expected a mapping, found {other:?}"),
    }
}

/// A job's or step's result, as `needs.<job>.result` and `steps.<id>.outcome` spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Skipped,
    Cancelled,
}

impl Outcome {
    pub fn word(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Skipped => "skipped",
            Outcome::Cancelled => "cancelled",
        }
    }
}

/// What the status functions see: for a job, the results of every job it depends on (directly
/// or not); for a step, whether an earlier step of its job failed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Status {
    pub failed: bool,
    /// Some job this one depends on did not succeed (skipped, failed or cancelled).
    pub unsuccessful: bool,
    pub cancelled: bool,
}

impl Status {
    /// The status of a job that depends on jobs with these results.
    pub fn of_needs(results: &[Outcome], cancelled: bool) -> Status {
        Status {
            failed: results.contains(&Outcome::Failure),
            unsuccessful: results.iter().any(|r| *r != Outcome::Success),
            cancelled,
        }
    }
}

/// Contexts and status for evaluating expressions.
#[derive(Clone, Debug, Default)]
pub struct Ctx {
    /// `github`, `env`, `matrix`, `needs`, `steps`, `runner`, `job`, `strategy`, `inputs`, `vars`.
    pub contexts: Map<String, Value>,
    pub status: Status,
    /// The workspace `hashFiles` reads.
    pub workspace: Option<PathBuf>,
}

impl Ctx {
    pub fn set(&mut self, name: &str, value: Value) {
        self.contexts.insert(name.to_string(), value);
    }

    /// An expression (`needs.plan.result == 'success'`).
    pub fn eval(&self, expr: &str) -> Result<Value> {
        let tokens = lex(expr).with_context(|| format!("in expression {expr:?}"))?;
        let mut p = Parser { tokens, pos: 0, ctx: self };
        let v = p.or().with_context(|| format!("in expression {expr:?}"))?;
        if p.pos != p.tokens.len() {
            bail!("in expression {expr:?}: unexpected {:?}", p.tokens[p.pos]);
        }
        Ok(v)
    }

    /// An `if:` condition: `${{ }}` optional; without a status function, `success() && (...)`.
    pub fn condition(&self, src: &str) -> Result<bool> {
        let src = src.trim();
        let inner = src.strip_prefix("${{").and_then(|s| s.strip_suffix("}}")).unwrap_or(src).trim();
        let lower = inner.to_ascii_lowercase();
        let has_status = ["success(", "failure(", "cancelled(", "always("].iter().any(|f| lower.contains(f));
        let expr = if has_status { inner.to_string() } else { format!("success() && ({inner})") };
        Ok(truthy(&self.eval(&expr)?))
    }

    /// A string with `${{ }}` expressions replaced by their values.
    pub fn interpolate(&self, s: &str) -> Result<String> {
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${{") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 3..];
            let Some(end) = after.find("}}") else { bail!("unclosed ${{{{ in {s:?}") };
            out.push_str(&to_text(&self.eval(&after[..end])?));
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// A YAML value with its expressions evaluated; a string that is one whole `${{ }}` keeps the
    /// expression's type (`${{ fromJSON(...) }}` is an object).
    pub fn evaluate_yaml(&self, y: &Yaml) -> Result<Value> {
        Ok(match y {
            Yaml::String(s) => {
                let t = s.trim();
                match t.strip_prefix("${{").and_then(|r| r.strip_suffix("}}")) {
                    Some(inner) if !inner.contains("${{") => self.eval(inner)?,
                    _ => Value::String(self.interpolate(s)?),
                }
            }
            Yaml::Integer(i) => Value::from(*i),
            Yaml::Real(r) => r.parse::<f64>().map(Value::from).unwrap_or(Value::String(r.clone())),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Null | Yaml::BadValue => Value::Null,
            Yaml::Array(a) => Value::Array(a.iter().map(|v| self.evaluate_yaml(v)).collect::<Result<_>>()?),
            Yaml::Hash(h) => {
                let mut m = Map::new();
                for (k, v) in h {
                    m.insert(scalar(k)?, self.evaluate_yaml(v)?);
                }
                Value::Object(m)
            }
            other => bail!("unsupported YAML value {other:?}"),
        })
    }
}

/// The combinations a `strategy.matrix` value expands to, as GitHub expands them (base vectors,
/// then `exclude`, then `include`).
pub fn expand_matrix(m: &Value) -> Result<Vec<Map<String, Value>>> {
    let Value::Object(m) = m else { bail!("the matrix is not an object: {m}") };
    let mut combos: Vec<Map<String, Value>> = vec![Map::new()];
    let mut base_keys = Vec::new();
    for (k, v) in m {
        if k == "include" || k == "exclude" {
            continue;
        }
        let Value::Array(values) = v else { bail!("matrix vector {k:?} is not a list") };
        if values.is_empty() {
            bail!("Matrix vector '{k}' does not contain any values");
        }
        base_keys.push(k.clone());
        combos = combos
            .into_iter()
            .flat_map(|c| {
                values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.insert(k.clone(), v.clone());
                    c
                })
            })
            .collect();
    }
    if base_keys.is_empty() {
        combos.clear();
    }
    let entries = |key: &str| -> Result<Vec<Map<String, Value>>> {
        match m.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|e| match e {
                    Value::Object(o) => Ok(o.clone()),
                    other => bail!("matrix {key} entry is not an object: {other}"),
                })
                .collect(),
            Some(other) => bail!("matrix {key} is not a list: {other}"),
        }
    };
    let matches = |c: &Map<String, Value>, e: &Map<String, Value>| e.iter().all(|(k, v)| c.get(k) == Some(v));
    let exclude = entries("exclude")?;
    combos.retain(|c| !exclude.iter().any(|e| matches(c, e)));
    let originals = combos.clone();
    for inc in entries("include")? {
        let mut added = false;
        for (c, orig) in combos.iter_mut().zip(&originals) {
            let fits = inc.iter().all(|(k, v)| !base_keys.contains(k) || orig.get(k) == Some(v));
            let overwrites = inc.iter().any(|(k, v)| orig.get(k).is_some_and(|o| o != v));
            if fits && !overwrites {
                c.extend(inc.clone());
                added = true;
            }
        }
        if !added {
            combos.push(inc);
        }
    }
    if combos.is_empty() {
        bail!("the matrix expands to no jobs");
    }
    Ok(combos)
}

pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A value as `${{ }}` renders it into text.
pub fn to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) if s.trim().is_empty() => 0.0,
        Value::String(s) => s.trim().parse().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

/// `==` as GitHub defines it: strings case-insensitively, other mixed types as numbers.
fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.eq_ignore_ascii_case(y),
        (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => {
            std::ptr::eq(a, b)
        }
        _ => to_number(a) == to_number(b),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
}

fn lex(s: &str) -> Result<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    const PUNCT: [&str; 16] =
        ["==", "!=", "<=", ">=", "&&", "||", "<", ">", "!", "(", ")", "[", "]", ".", ",", "*"];
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '\'' {
            let mut lit = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => bail!("unterminated string"),
                    Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                        lit.push('\'');
                        i += 2;
                    }
                    Some('\'') => {
                        i += 1;
                        break;
                    }
                    Some(ch) => {
                        lit.push(*ch);
                        i += 1;
                    }
                }
            }
            out.push(Tok::Str(lit));
        } else if c.is_ascii_digit() || (c == '-' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            out.push(Tok::Num(text.parse().map_err(|_| anyhow::anyhow!("bad number {text}"))?));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == '-')
            {
                i += 1;
            }
            out.push(Tok::Ident(chars[start..i].iter().collect()));
        } else {
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(p) = PUNCT.iter().find(|p| rest.starts_with(**p)) else { bail!("unexpected {c:?}") };
            out.push(Tok::Punct(p));
            i += p.len();
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Tok>,
    pos: usize,
    ctx: &'a Ctx,
}

impl Parser<'_> {
    fn eat(&mut self, p: &str) -> bool {
        if matches!(self.tokens.get(self.pos), Some(Tok::Punct(q)) if *q == p) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, p: &str) -> Result<()> {
        if !self.eat(p) {
            bail!("expected {p:?} at {:?}", self.tokens.get(self.pos));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Value> {
        let mut v = self.and()?;
        while self.eat("||") {
            let r = self.and()?;
            if !truthy(&v) {
                v = r;
            }
        }
        Ok(v)
    }

    fn and(&mut self) -> Result<Value> {
        let mut v = self.equality()?;
        while self.eat("&&") {
            let r = self.equality()?;
            if truthy(&v) {
                v = r;
            }
        }
        Ok(v)
    }

    fn equality(&mut self) -> Result<Value> {
        let mut v = self.comparison()?;
        loop {
            if self.eat("==") {
                let r = self.comparison()?;
                v = Value::Bool(loose_eq(&v, &r));
            } else if self.eat("!=") {
                let r = self.comparison()?;
                v = Value::Bool(!loose_eq(&v, &r));
            } else {
                return Ok(v);
            }
        }
    }

    fn comparison(&mut self) -> Result<Value> {
        let mut v = self.unary()?;
        loop {
            let op = ["<=", ">=", "<", ">"].into_iter().find(|op| self.eat(op));
            let Some(op) = op else { return Ok(v) };
            let r = self.unary()?;
            let (a, b) = (to_number(&v), to_number(&r));
            v = Value::Bool(match op {
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                _ => a >= b,
            });
        }
    }

    fn unary(&mut self) -> Result<Value> {
        if self.eat("!") {
            return Ok(Value::Bool(!truthy(&self.unary()?)));
        }
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Value> {
        let mut v = self.primary()?;
        loop {
            if self.eat(".") {
                match self.tokens.get(self.pos).cloned() {
                    Some(Tok::Ident(name)) => {
                        self.pos += 1;
                        v = property(&v, &name);
                    }
                    Some(Tok::Punct("*")) => bail!("object filters (.*) are not supported"),
                    other => bail!("expected a property name, found {other:?}"),
                }
            } else if self.eat("[") {
                let index = self.or()?;
                self.expect("]")?;
                v = match (&v, &index) {
                    (Value::Array(a), i) => a.get(to_number(i) as usize).cloned().unwrap_or(Value::Null),
                    (_, Value::String(k)) => property(&v, k),
                    _ => Value::Null,
                };
            } else {
                return Ok(v);
            }
        }
    }

    fn primary(&mut self) -> Result<Value> {
        let Some(tok) = self.tokens.get(self.pos).cloned() else { bail!("unexpected end") };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Value::from(n)),
            Tok::Str(s) => Ok(Value::String(s)),
            Tok::Punct("(") => {
                let v = self.or()?;
                self.expect(")")?;
                Ok(v)
            }
            Tok::Ident(name) => {
                if self.eat("(") {
                    let mut args = Vec::new();
                    if !self.eat(")") {
                        loop {
                            args.push(self.or()?);
                            if self.eat(")") {
                                break;
                            }
                            self.expect(",")?;
                        }
                    }
                    return self.call(&name, args);
                }
                Ok(match name.as_str() {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" => Value::Null,
                    _ => property(&Value::Object(self.ctx.contexts.clone()), &name),
                })
            }
            other => bail!("unexpected {other:?}"),
        }
    }

    fn call(&self, name: &str, args: Vec<Value>) -> Result<Value> {
        let s = self.ctx.status;
        let text = |i: usize| args.get(i).map(to_text).unwrap_or_default();
        Ok(match name.to_ascii_lowercase().as_str() {
            "success" => Value::Bool(!s.failed && !s.unsuccessful && !s.cancelled),
            "failure" => Value::Bool(s.failed && !s.cancelled),
            "cancelled" => Value::Bool(s.cancelled),
            "always" => Value::Bool(true),
            "fromjson" => serde_json::from_str(text(0).trim())
                .map_err(|e| anyhow::anyhow!("fromJSON: {:?} is not JSON ({e})", text(0)))?,
            "tojson" => Value::String(serde_json::to_string_pretty(args.first().unwrap_or(&Value::Null))?),
            "contains" => Value::Bool(match args.first() {
                Some(Value::Array(a)) => a.iter().any(|x| loose_eq(x, args.get(1).unwrap_or(&Value::Null))),
                _ => text(0).to_lowercase().contains(&text(1).to_lowercase()),
            }),
            "startswith" => Value::Bool(text(0).to_lowercase().starts_with(&text(1).to_lowercase())),
            "endswith" => Value::Bool(text(0).to_lowercase().ends_with(&text(1).to_lowercase())),
            "join" => match args.first() {
                Some(Value::Array(a)) => Value::String(
                    a.iter().map(to_text).collect::<Vec<_>>().join(&args.get(1).map_or(",".into(), to_text)),
                ),
                _ => Value::String(text(0)),
            },
            "format" => {
                let mut out = text(0).replace("{{", "\u{0}").replace("}}", "\u{1}");
                for i in 1..args.len() {
                    out = out.replace(&format!("{{{}}}", i - 1), &text(i));
                }
                Value::String(out.replace('\u{0}', "{").replace('\u{1}', "}"))
            }
            "hashfiles" => {
                let ws = self.ctx.workspace.as_ref().context("hashFiles outside a job")?;
                Value::String(hash_files(ws, &args.iter().map(to_text).collect::<Vec<_>>())?)
            }
            other => bail!("function {other}() is not one the rehearsal knows"),
        })
    }
}

fn property(v: &Value, name: &str) -> Value {
    match v {
        Value::Object(m) => m
            .get(name)
            .or_else(|| m.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
            .cloned()
            .unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// `hashFiles(...)`: the sha256 over each matched file's sha256, files in path order; empty when
/// nothing matches. Patterns are plain paths, or have `*` and `?` in their last component only
/// (`images/configs/*`); other glob forms are refused, named.
pub fn hash_files(workspace: &Path, patterns: &[String]) -> Result<String> {
    let mut files = Vec::new();
    for p in patterns {
        let (dir, name) = p.rsplit_once('/').unwrap_or(("", p));
        if dir.contains(['*', '?', '[', '!']) || name.contains(['[', '!']) || name.starts_with('!') {
            bail!("hashFiles pattern {p:?}: the rehearsal matches plain paths and `*`/`?` in the last component only");
        }
        if name.contains(['*', '?']) {
            let Ok(entries) = std::fs::read_dir(workspace.join(dir)) else { continue };
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_file() && wildcard(name.as_bytes(), file.as_bytes()) {
                    files.push(entry.path());
                }
            }
            continue;
        }
        let path = workspace.join(p);
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut outer = Sha256::new();
    for f in files {
        let data = std::fs::read(&f).with_context(|| format!("hashFiles: cannot read {}", f.display()))?;
        outer.update(Sha256::digest(&data));
    }
    Ok(outer.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `name` matches `pattern`, where `*` is any run of characters and `?` any one.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
        (Some(p), Some(n)) if p == n => wildcard(&pattern[1..], &name[1..]),
        _ => false,
    }
}

/// `key=value` and `key<<DELIM ... DELIM` lines, as `$GITHUB_OUTPUT` and `$GITHUB_ENV` hold them.
pub fn parse_commands_file(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim().is_empty() {
            continue;
        }
        if let Some((key, delim)) = line.split_once("<<") {
            let mut value = Vec::new();
            loop {
                match lines.next() {
                    Some(l) if l == delim => break,
                    Some(l) => value.push(l),
                    None => bail!("{key}<<{delim}: no closing {delim} line"),
                }
            }
            out.push((key.to_string(), value.join("\n")));
        } else if let Some((key, value)) = line.split_once('=') {
            out.push((key.to_string(), value.to_string()));
        } else {
            bail!("{line:?} is neither key=value nor key<<DELIMITER");
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_files_takes_plain_paths_and_a_wildcard_in_the_last_component() {
        let ws = crate::util::project_root().join("target/uffdc/tests/hash-files");
        let _ = std::fs::remove_dir_all(&ws);
        std::fs::create_dir_all(ws.join("images/configs")).unwrap();
        std::fs::write(ws.join("images/kernels.lock"), "lock").unwrap();
        std::fs::write(ws.join("images/configs/base.config"), "CONFIG_A=y").unwrap();
        let h = |p: &[&str]| hash_files(&ws, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let both = h(&["images/kernels.lock", "images/configs/base.config"]).unwrap();
        // The ci.yml key's form: a directory's files by `*`.
        assert_eq!(h(&["images/kernels.lock", "images/configs/*"]).unwrap(), both);
        assert_eq!(h(&["images/kernels.lock", "images/configs/*.config"]).unwrap(), both);
        assert_ne!(h(&["images/kernels.lock", "images/configs/*.toml"]).unwrap(), both);
        assert_eq!(h(&["images/nothing/*"]).unwrap(), "");
        std::fs::write(ws.join("images/configs/base.config"), "CONFIG_A=n").unwrap();
        assert_ne!(h(&["images/kernels.lock", "images/configs/*"]).unwrap(), both);
        assert!(h(&["images/**/x"]).unwrap_err().to_string().contains("last component"));
        assert!(wildcard(b"b?se.*", b"base.config") && !wildcard(b"*.toml", b"base.config"));
    }

    fn ctx(status: Status) -> Ctx {
        let mut c = Ctx { status, ..Ctx::default() };
        c.set(
            "needs",
            json!({"plan": {"result": "success", "outputs": {"matrix": "{\"kernel\":[\"a\",\"b\"]}"}}}),
        );
        c.set("steps", json!({"diff": {"outputs": {"changed": "true"}}}));
        c
    }

    #[test]
    fn expressions_follow_github() {
        let c = ctx(Status::default());
        assert_eq!(c.eval("needs.plan.result == 'SUCCESS'").unwrap(), json!(true));
        assert_eq!(c.eval("fromJSON(needs.plan.outputs.matrix).kernel[1]").unwrap(), json!("b"));
        assert_eq!(c.eval("steps.diff.outputs.changed == 'true' && 'yes' || 'no'").unwrap(), json!("yes"));
        assert_eq!(c.eval("steps.missing.outputs.x").unwrap(), Value::Null);
        assert_eq!(c.interpolate("k-${{ needs.plan.result }}-${{ 1 }}").unwrap(), "k-success-1");
        assert_eq!(c.eval("format('{0}-{1}', 'a', 2)").unwrap(), json!("a-2"));
        assert!(c.eval("fromJSON('not json')").is_err());
        assert!(c.eval("nosuch()").is_err());
        // An `if:` without a status function means `success() && (...)`.
        let failed = ctx(Status { failed: true, unsuccessful: true, cancelled: false });
        assert!(!failed.condition("needs.plan.result == 'success'").unwrap());
        assert!(failed.condition("always() && needs.plan.result == 'success'").unwrap());
        assert!(failed.condition("${{ !cancelled() }}").unwrap());
        let cancelled = ctx(Status { failed: false, unsuccessful: true, cancelled: true });
        assert!(cancelled.condition("always()").unwrap());
        assert!(!cancelled.condition("!cancelled()").unwrap());
    }

    #[test]
    fn matrices_expand_as_on_github() {
        let m =
            expand_matrix(&json!({"kernel": ["a", "b"], "include": [{"kernel": "a", "pin": "1"}]})).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0]["pin"], "1");
        assert!(!m[1].contains_key("pin"));
        let only = expand_matrix(&json!({"include": [{"kernel": "a"}, {"kernel": "b"}]})).unwrap();
        assert_eq!(only.len(), 2);
        assert!(expand_matrix(&json!({"kernel": []})).is_err());
    }

    #[test]
    fn output_files_parse_both_forms() {
        let parsed = parse_commands_file("a=1\nbody<<EOF\nline 1\nline 2\nEOF\n").unwrap();
        assert_eq!(parsed, [("a".into(), "1".into()), ("body".into(), "line 1\nline 2".into())]);
        assert!(parse_commands_file("x<<EOF\nno end\n").is_err());
    }

    #[test]
    fn the_default_shell_has_no_pipefail() {
        assert_eq!(shell_command(None).unwrap(), ["bash", "-e", "{0}"]);
        assert!(shell_command(Some("bash")).unwrap().contains(&"pipefail".to_string()));
    }
}
