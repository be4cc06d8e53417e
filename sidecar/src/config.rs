//! The sidecar's configuration, read from the environment (the downward API in a pod).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A variable is missing or invalid. The binary exits with code 64 (EX_USAGE).
#[derive(Debug, thiserror::Error)]
#[error("{var}: {problem}")]
pub struct Error {
    /// The variable.
    pub var: &'static str,
    /// What is wrong and what to set.
    pub problem: String,
}

/// Everything the sidecar needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// The pod's namespace (`POD_NAMESPACE`).
    pub namespace: String,
    /// The pod's name (`POD_NAME`).
    pub pod: String,
    /// The pod's uid (`POD_UID`).
    pub uid: String,
    /// The node the pod runs on (`NODE_NAME`, optional).
    pub node: String,
    /// The pod's labels as a JSON object (`POD_LABELS`, optional; `{}` by default).
    pub labels: String,
    /// The runtime's link address (`BOSUN_RUNTIME`): `http://host:port` or `https://host:port`.
    pub runtime: String,
    /// The token that proves the sidecar belongs to its pod (`BOSUN_TOKEN`, or the file
    /// named by `BOSUN_TOKEN_FILE`, read again at each connection).
    pub token: Token,
    /// PEM certificate(s) the runtime's TLS certificate must chain to (`BOSUN_RUNTIME_CA`,
    /// a file; required with `https://`).
    pub runtime_ca: Option<PathBuf>,
    /// Where the probe endpoints listen (`BOSUN_PROBE_ADDR`, default `0.0.0.0:9901`).
    pub probe_addr: SocketAddr,
    /// The directory pod-agent plugins may read and write (`BOSUN_SHARED_DIR`,
    /// default `/bosun/shared`).
    pub shared_dir: PathBuf,
    /// Where plugin bytes are cached by digest (`BOSUN_DATA_DIR`, default
    /// `/tmp/bosun-sidecar`).
    pub data_dir: PathBuf,
    /// Longest wait between reconnection attempts (`BOSUN_RECONNECT_MAX_MS`, default 5000).
    pub reconnect_max: Duration,
    /// Deadline of one probe endpoint request (`BOSUN_PROBE_TIMEOUT_MS`, default 1000).
    pub probe_timeout: Duration,
    /// Run the runtime's precompiled code when its engine matches this one's
    /// (`BOSUN_PRECOMPILED`) instead of compiling each plugin here: by default only over
    /// `https://`, where the CA authenticates the runtime. `false` compiles locally, and
    /// needs a sidecar built with its compiler.
    pub precompiled: bool,
}

/// Where the token comes from.
#[derive(Debug, Clone)]
pub enum Token {
    /// A fixed value.
    Value(String),
    /// A file (a projected service-account token is rotated on disk).
    File(PathBuf),
}

impl Token {
    /// The current token.
    pub fn read(&self) -> std::io::Result<String> {
        match self {
            Token::Value(v) => Ok(v.clone()),
            Token::File(p) => Ok(std::fs::read_to_string(p)?.trim().to_owned()),
        }
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, Error> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// Reads variables through `get` (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let required = |var: &'static str, what: &str| -> Result<String, Error> {
            match get(var) {
                Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(Error {
                    var,
                    problem: format!("not set; {what}"),
                }),
            }
        };
        let downward = "set it from the downward API (fieldRef)";
        let namespace = required("POD_NAMESPACE", &format!("{downward}: metadata.namespace"))?;
        let pod = required("POD_NAME", &format!("{downward}: metadata.name"))?;
        let uid = required("POD_UID", &format!("{downward}: metadata.uid"))?;
        let runtime = required(
            "BOSUN_RUNTIME",
            "the runtime's link address, e.g. https://bosun-runtime.bosun-system:9470",
        )?;
        if !(runtime.starts_with("http://") || runtime.starts_with("https://")) {
            return Err(Error {
                var: "BOSUN_RUNTIME",
                problem: format!(
                    "{runtime:?} is not an address; use http://HOST:PORT or https://HOST:PORT"
                ),
            });
        }
        let token = match (get("BOSUN_TOKEN"), get("BOSUN_TOKEN_FILE")) {
            (Some(v), _) if !v.trim().is_empty() => Token::Value(v.trim().to_owned()),
            (_, Some(f)) if !f.trim().is_empty() => Token::File(PathBuf::from(f.trim())),
            _ => {
                return Err(Error {
                    var: "BOSUN_TOKEN_FILE",
                    problem: "neither BOSUN_TOKEN nor BOSUN_TOKEN_FILE is set; mount the pod's \
                              projected service-account token and name its file"
                        .to_owned(),
                });
            }
        };
        let runtime_ca = get("BOSUN_RUNTIME_CA")
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        if runtime.starts_with("https://") && runtime_ca.is_none() {
            return Err(Error {
                var: "BOSUN_RUNTIME_CA",
                problem: "required with an https:// runtime: the PEM file of the CA that signed \
                          the runtime's certificate"
                    .to_owned(),
            });
        }
        let https = runtime.starts_with("https://");
        let probe_addr = match get("BOSUN_PROBE_ADDR") {
            Some(v) => v.trim().parse().map_err(|e| Error {
                var: "BOSUN_PROBE_ADDR",
                problem: format!("{v:?}: {e}; use IP:PORT, e.g. 0.0.0.0:9901"),
            })?,
            None => SocketAddr::from(([0, 0, 0, 0], 9901)),
        };
        let millis = |var: &'static str, default: u64| -> Result<Duration, Error> {
            match get(var) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                    _ => Err(Error {
                        var,
                        problem: format!("{v:?} is not a positive number of milliseconds"),
                    }),
                },
            }
        };
        let labels = get("POD_LABELS").unwrap_or_else(|| "{}".to_owned());
        if !serde_json::from_str::<serde_json::Value>(&labels).is_ok_and(|v| v.is_object()) {
            return Err(Error {
                var: "POD_LABELS",
                problem: "not a JSON object of label names to values".to_owned(),
            });
        }
        Ok(Config {
            namespace,
            pod,
            uid,
            node: get("NODE_NAME").unwrap_or_default(),
            labels,
            runtime,
            token,
            runtime_ca,
            probe_addr,
            shared_dir: PathBuf::from(
                get("BOSUN_SHARED_DIR").unwrap_or_else(|| "/bosun/shared".to_owned()),
            ),
            data_dir: PathBuf::from(
                get("BOSUN_DATA_DIR").unwrap_or_else(|| "/tmp/bosun-sidecar".to_owned()),
            ),
            reconnect_max: millis("BOSUN_RECONNECT_MAX_MS", 5000)?,
            probe_timeout: millis("BOSUN_PROBE_TIMEOUT_MS", 1000)?,
            precompiled: match get("BOSUN_PRECOMPILED").as_deref().map(str::trim) {
                // Native code only from a runtime the CA authenticates.
                None | Some("") if https => true,
                None | Some("") if cfg!(feature = "compiler") => false,
                None | Some("") => {
                    return Err(Error {
                        var: "BOSUN_PRECOMPILED",
                        problem: "this sidecar has no compiler, so it runs the runtime's \
                                  compiled (native, not sandboxed) code, and over http:// \
                                  nothing proves the runtime is the runtime: use https:// \
                                  with BOSUN_RUNTIME_CA, or set it to true to accept that"
                            .to_owned(),
                    });
                }
                Some("true") => true,
                Some("false") if cfg!(feature = "compiler") => false,
                Some("false") => {
                    return Err(Error {
                        var: "BOSUN_PRECOMPILED",
                        problem: "this sidecar is built without a compiler, so it runs only the \
                                  runtime's precompiled code: unset it, or use a sidecar built \
                                  with the `compiler` feature"
                            .to_owned(),
                    });
                }
                Some(v) => {
                    return Err(Error {
                        var: "BOSUN_PRECOMPILED",
                        problem: format!("{v:?}: use true or false"),
                    });
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("POD_NAMESPACE", "demo"),
        ("POD_NAME", "web-0"),
        ("POD_UID", "u1"),
        ("BOSUN_RUNTIME", "http://127.0.0.1:9470"),
        ("BOSUN_TOKEN", "t"),
    ];

    #[test]
    fn a_complete_environment_is_read() {
        let c = Config::from_vars(vars(BASE)).expect("config");
        assert_eq!((c.namespace.as_str(), c.pod.as_str()), ("demo", "web-0"));
        assert_eq!(c.probe_addr.port(), 9901);
        assert_eq!(c.probe_timeout, Duration::from_millis(1000));
        // Over http:// nothing authenticates the runtime: its native code is not taken
        // unless asked for (and a sidecar without a compiler must be told).
        assert_eq!(
            Config::from_vars(vars(BASE)).map(|c| c.precompiled).ok(),
            cfg!(feature = "compiler").then_some(false)
        );
        let mut tls = BASE.to_vec();
        tls[3] = ("BOSUN_RUNTIME", "https://runtime:9470");
        tls.push(("BOSUN_RUNTIME_CA", "/ca.pem"));
        assert!(Config::from_vars(vars(&tls)).expect("tls").precompiled);
        let mut on = BASE.to_vec();
        on.push(("BOSUN_PRECOMPILED", "true"));
        assert!(Config::from_vars(vars(&on)).expect("asked").precompiled);
        let mut off = BASE.to_vec();
        off.push(("BOSUN_PRECOMPILED", "false"));
        assert_eq!(
            Config::from_vars(vars(&off)).map(|c| c.precompiled).ok(),
            cfg!(feature = "compiler").then_some(false)
        );
        off.pop();
        off.push(("BOSUN_PRECOMPILED", "maybe"));
        assert_eq!(
            Config::from_vars(vars(&off)).expect_err("bad").var,
            "BOSUN_PRECOMPILED"
        );
    }

    #[test]
    fn each_problem_names_its_variable() {
        for (drop, var) in [
            ("POD_NAME", "POD_NAME"),
            ("POD_UID", "POD_UID"),
            ("BOSUN_RUNTIME", "BOSUN_RUNTIME"),
            ("BOSUN_TOKEN", "BOSUN_TOKEN_FILE"),
        ] {
            let pairs: Vec<(&str, &str)> =
                BASE.iter().copied().filter(|(k, _)| *k != drop).collect();
            let e = Config::from_vars(vars(&pairs)).expect_err(drop);
            assert_eq!(e.var, var, "{e}");
        }
        let mut bad = BASE.to_vec();
        bad.push(("BOSUN_PROBE_ADDR", "nine"));
        assert_eq!(
            Config::from_vars(vars(&bad)).expect_err("addr").var,
            "BOSUN_PROBE_ADDR"
        );
        let mut tls = BASE.to_vec();
        tls[3] = ("BOSUN_RUNTIME", "https://runtime:9470");
        assert_eq!(
            Config::from_vars(vars(&tls)).expect_err("ca").var,
            "BOSUN_RUNTIME_CA"
        );
        let mut labels = BASE.to_vec();
        labels.push(("POD_LABELS", "[1]"));
        assert_eq!(
            Config::from_vars(vars(&labels)).expect_err("labels").var,
            "POD_LABELS"
        );
    }
}
