//! The `fieldValidation` a write asked for (`Strict`, `Warn` or `Ignore`, what kubectl's
//! `--validate` sends), and the warnings the answer carries about dropped fields.
//!
//! It is request-scoped: the API layer runs each request in a [`scope`]; the store's
//! validation, which runs inside it, reads the directive and records warnings. Writes
//! made outside a request (the internal controllers) ignore unknown fields silently.

use crate::status::ApiError;
use std::cell::RefCell;
use std::future::Future;

/// How unknown (and duplicate) fields in a body are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directive {
    /// Dropped silently.
    Ignore,
    /// Dropped, with a warning each (the default).
    Warn,
    /// The write fails.
    Strict,
}

/// The verb of the request, which decides how a strict failure is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verb {
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH with a JSON, merge or strategic-merge patch.
    Patch,
    /// PATCH with server-side apply.
    Apply,
    /// Anything else.
    Other,
}

/// Warnings of one answer: beyond this many characters in all, each is cut to
/// [`TRUNCATE_ITEM`] and the rest dropped (kube-apiserver's warning recorder).
const TRUNCATE_TOTAL: usize = 4 * 1024;
/// The length warnings are cut to once the total is exceeded.
const TRUNCATE_ITEM: usize = 256;

/// kube-apiserver's warning recorder: repeated texts once, and a bounded total.
#[derive(Default)]
struct Recorder {
    seen: std::collections::HashSet<String>,
    ordered: Vec<String>,
    headers: Vec<String>,
    written: usize,
    truncating: bool,
}

fn cut(text: &str) -> (String, usize) {
    let n = text.chars().count();
    if n > TRUNCATE_ITEM {
        (text.chars().take(TRUNCATE_ITEM).collect(), TRUNCATE_ITEM)
    } else {
        (text.to_string(), n)
    }
}

impl Recorder {
    fn add(&mut self, text: String) {
        if text.is_empty() || (self.truncating && self.written >= TRUNCATE_TOTAL) {
            return;
        }
        if !self.seen.insert(text.clone()) {
            return;
        }
        self.ordered.push(text.clone());
        let (shown, len) = if self.truncating {
            cut(&text)
        } else {
            let n = text.chars().count();
            (text, n)
        };
        if self.written + len <= TRUNCATE_TOTAL || self.truncating {
            self.written += len;
            self.headers.push(shown);
            return;
        }
        self.truncating = true;
        self.written = 0;
        self.headers.clear();
        for t in &self.ordered {
            let (shown, len) = cut(t);
            self.written += len;
            self.headers.push(shown);
        }
    }
}

/// One request's directive and warnings.
pub(crate) struct Request {
    verb: Verb,
    /// The `fieldValidation` parameter, as sent.
    raw: String,
    warnings: RefCell<Recorder>,
    /// Paths of the fields the JSON body repeats.
    duplicates: RefCell<Vec<String>>,
}

impl Request {
    /// From the method, the query string and the `Content-Type`.
    pub(crate) fn new(method: &str, query: Option<&str>, content_type: &str) -> Self {
        let verb = match method {
            "POST" => Verb::Create,
            "PUT" => Verb::Update,
            "PATCH" if content_type.contains("apply-patch") => Verb::Apply,
            "PATCH" => Verb::Patch,
            _ => Verb::Other,
        };
        let raw = query
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .filter(|(k, _)| *k == "fieldValidation")
            .map(|(_, v)| v.to_string())
            .next_back()
            .unwrap_or_default();
        Self {
            verb,
            raw,
            warnings: RefCell::new(Recorder::default()),
            duplicates: RefCell::new(Vec::new()),
        }
    }
}

tokio::task_local! {
    static REQUEST: Request;
}

/// Runs `f` as `request`; returns its output and the warnings recorded meanwhile.
pub(crate) async fn scope<F: Future>(request: Request, f: F) -> (F::Output, Vec<String>) {
    REQUEST
        .scope(request, async move {
            let out = f.await;
            let warnings = REQUEST.with(|r| std::mem::take(&mut r.warnings.borrow_mut().headers));
            (out, warnings)
        })
        .await
}

/// The directive of the current request and its verb; `Ignore` outside a request. A
/// value other than `Strict`, `Warn`, `Ignore` or empty is refused as kube-apiserver
/// refuses the request's options.
pub(crate) fn current() -> Result<(Directive, Verb), ApiError> {
    let Ok((verb, raw)) = REQUEST.try_with(|r| (r.verb, r.raw.clone())) else {
        return Ok((Directive::Ignore, Verb::Other));
    };
    let directive = match raw.as_str() {
        "" | "Warn" => Directive::Warn,
        "Strict" => Directive::Strict,
        "Ignore" => Directive::Ignore,
        other => {
            let kind = match verb {
                Verb::Update => "UpdateOptions",
                Verb::Patch | Verb::Apply => "PatchOptions",
                _ => "CreateOptions",
            };
            let e = crate::schema::FieldError::new(
                crate::schema::field::Kind::NotSupported,
                "fieldValidation",
                crate::schema::field::GoValue::Str(other.to_string()),
                "supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
            );
            return Err(ApiError::invalid_fields("meta.k8s.io", kind, "", &[e]));
        }
    };
    Ok((directive, verb))
}

/// Records a warning for the current request (once; nothing outside a request).
pub(crate) fn warn(text: String) {
    let _ = REQUEST.try_with(|r| r.warnings.borrow_mut().add(text));
}

/// Notes the fields a JSON body repeats (the last value wins, as in Go), for the
/// current request's `fieldValidation`.
pub(crate) fn note_body(body: &[u8]) {
    let _ = REQUEST.try_with(|r| {
        let mut found = Vec::new();
        let mut scan = Scan { b: body, i: 0 };
        scan.value(&mut String::new(), &mut found, 0);
        *r.duplicates.borrow_mut() = found;
    });
}

/// The repeated fields of the current request's body (once: later calls get none).
pub(crate) fn take_duplicates() -> Vec<String> {
    REQUEST
        .try_with(|r| std::mem::take(&mut *r.duplicates.borrow_mut()))
        .unwrap_or_default()
}

/// A scan of JSON that is known to parse: only keys and their paths matter.
struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    fn ws(&mut self) {
        while self.b.get(self.i).is_some_and(u8::is_ascii_whitespace) {
            self.i += 1;
        }
    }

    /// A string at `i` (its opening quote), decoded.
    fn string(&mut self) -> String {
        let start = self.i;
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            self.i += 1;
            match c {
                b'\\' => self.i += 1,
                b'"' => break,
                _ => {}
            }
        }
        let raw = self.b.get(start..self.i).unwrap_or_default();
        serde_json::from_slice(raw).unwrap_or_default()
    }

    fn value(&mut self, path: &mut String, found: &mut Vec<String>, depth: usize) {
        self.ws();
        match self.b.get(self.i) {
            Some(b'{') if depth < 512 => {
                self.i += 1;
                let mut keys = std::collections::HashSet::new();
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b'"') => {}
                        Some(b'}') | None => {
                            self.i += 1;
                            return;
                        }
                        Some(_) => {
                            self.i += 1;
                            continue;
                        }
                    }
                    let key = self.string();
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(&key);
                    if !keys.insert(key) {
                        found.push(path.clone());
                    }
                    self.ws();
                    self.i += 1; // the colon
                    self.value(path, found, depth + 1);
                    path.truncate(len);
                    self.ws();
                    if self.b.get(self.i) == Some(&b',') {
                        self.i += 1;
                    }
                }
            }
            Some(b'[') if depth < 512 => {
                self.i += 1;
                let mut n = 0;
                loop {
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b']') | None => {
                            self.i += 1;
                            return;
                        }
                        Some(b',') => {
                            self.i += 1;
                            continue;
                        }
                        Some(_) => {}
                    }
                    let (len, at) = (path.len(), self.i);
                    path.push_str(&format!("[{n}]"));
                    self.value(path, found, depth + 1);
                    path.truncate(len);
                    n += 1;
                    if self.i == at {
                        // Not JSON after all: never loop in place.
                        self.i += 1;
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self
                    .b
                    .get(self.i)
                    .is_some_and(|c| !matches!(c, b',' | b'}' | b']') && !c.is_ascii_whitespace())
                {
                    self.i += 1;
                }
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn directive_and_warnings_are_per_request() {
        assert_eq!(current().ok(), Some((Directive::Ignore, Verb::Other)));
        let req = Request::new(
            "PATCH",
            Some("a=1&fieldValidation=Strict"),
            "application/apply-patch+yaml",
        );
        let (d, warnings) = scope(req, async {
            warn("one".into());
            warn("one".into());
            current().ok()
        })
        .await;
        assert_eq!(d, Some((Directive::Strict, Verb::Apply)));
        assert_eq!(warnings, vec!["one"]);
        let req = Request::new("POST", Some("fieldValidation=strict"), "");
        let (e, _) = scope(req, async { current().err() }).await;
        let e = e.expect("refused");
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
        );
    }

    #[tokio::test]
    async fn repeated_fields_are_found_in_order() {
        let body = br#"{"metadata":{"name":"d1","name":"d1"},"spec":{"name":"abc","items":[{"k":"a","k":"b"}],"name":"a\"}"},"spec":{"n\u0061me":1,"name":2}}"#;
        let req = Request::new("POST", None, "application/json");
        let (dups, _) = scope(req, async {
            note_body(body);
            take_duplicates()
        })
        .await;
        assert_eq!(
            dups,
            vec![
                "metadata.name",
                "spec.items[0].k",
                "spec.name",
                "spec",
                "spec.name"
            ]
        );
    }

    #[test]
    fn warnings_are_truncated_as_upstream() {
        let mut r = Recorder::default();
        for i in 0..1000 {
            r.add(format!(
                "unknown field \"spec.permissions[{i}].zz\" {}",
                "x".repeat(300)
            ));
        }
        assert!(r.truncating);
        assert!(r.headers.iter().all(|h| h.chars().count() == TRUNCATE_ITEM));
        assert_eq!(r.headers.len(), TRUNCATE_TOTAL / TRUNCATE_ITEM);
        let mut small = Recorder::default();
        small.add("a".into());
        small.add("a".into());
        small.add("b".into());
        assert_eq!(small.headers, vec!["a", "b"]);
    }
}
