//! The `pod` interface as the sidecar serves it: HTTP to the pod's loopback and files
//! under the shared directory, nothing else.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use bosun_host::contract::{HttpResponse, PodInfo};
use bosun_host::host::pod::Pod;

/// The largest HTTP response body or file a plugin may read.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The longest HTTP timeout a plugin may ask for.
const MAX_TIMEOUT_MS: u32 = 30_000;

/// The pod the sidecar runs in.
#[derive(Debug, Clone)]
pub struct LocalPod {
    info: PodInfo,
    shared: PathBuf,
}

impl LocalPod {
    /// The pod `info`, with files confined to `shared`.
    pub fn new(info: PodInfo, shared: PathBuf) -> Self {
        LocalPod { info, shared }
    }

    /// Resolves a plugin's relative path under the shared directory, refusing absolute
    /// paths, `..` and symlinks that lead outside it.
    fn resolve(&self, path: &str) -> Result<PathBuf, String> {
        let rel = Path::new(path);
        if path.is_empty()
            || rel
                .components()
                .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "{path:?}: only relative paths inside the shared directory are allowed"
            ));
        }
        let full = self.shared.join(rel);
        let root = self
            .shared
            .canonicalize()
            .map_err(|e| format!("shared directory {}: {e}", self.shared.display()))?;
        // The deepest existing ancestor must stay inside the shared directory.
        let mut probe = full.clone();
        while !probe.exists() {
            if !probe.pop() {
                break;
            }
        }
        let real = probe.canonicalize().map_err(|e| format!("{path}: {e}"))?;
        if !real.starts_with(&root) {
            return Err(format!("{path:?} leads outside the shared directory"));
        }
        Ok(full)
    }
}

fn http(
    port: u16,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
    timeout_ms: u32,
) -> Result<HttpResponse, String> {
    if !path.starts_with('/') || path.contains(['\r', '\n', ' ']) {
        return Err(format!(
            "{path:?}: the path must start with / and contain no spaces or line breaks"
        ));
    }
    let timeout = Duration::from_millis(u64::from(timeout_ms.clamp(1, MAX_TIMEOUT_MS)));
    let deadline = Instant::now() + timeout;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("{method} {path}: timed out after {timeout_ms} ms"))
    };
    stream.set_write_timeout(Some(left()?)).ok();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nUser-Agent: bosun-sidecar\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(ct) = content_type {
        request.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        stream.set_read_timeout(Some(left()?)).ok();
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&buf[..n]);
                if raw.len() > MAX_BODY + 64 * 1024 {
                    return Err(format!(
                        "{method} {path}: response larger than {MAX_BODY} bytes"
                    ));
                }
                if let Some(done) = complete(&raw) {
                    raw.truncate(done);
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("{method} {path}: timed out after {timeout_ms} ms"));
            }
            Err(e) => return Err(format!("{method} {path}: {e}")),
        }
    }
    parse(&raw).ok_or_else(|| format!("{method} {path}: not an HTTP/1.x response"))
}

fn head_end(raw: &[u8]) -> Option<usize> {
    raw.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The length of a complete response with a Content-Length, once it has arrived.
fn complete(raw: &[u8]) -> Option<usize> {
    let end = head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let len: usize = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })?;
    (raw.len() >= end + len).then_some(end + len)
}

fn parse(raw: &[u8]) -> Option<HttpResponse> {
    let end = head_end(raw)?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body)?;
    }
    Some(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

impl Pod for LocalPod {
    fn info(&self) -> PodInfo {
        self.info.clone()
    }

    fn http_get(&self, port: u16, path: &str, timeout_ms: u32) -> Result<HttpResponse, String> {
        http(port, "GET", path, None, &[], timeout_ms)
    }

    fn http_post(
        &self,
        port: u16,
        path: &str,
        content_type: &str,
        body: &[u8],
        timeout_ms: u32,
    ) -> Result<HttpResponse, String> {
        if content_type.contains(['\r', '\n']) {
            return Err("the content type must be one line".to_owned());
        }
        http(port, "POST", path, Some(content_type), body, timeout_ms)
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let full = self.resolve(path)?;
        let meta = std::fs::metadata(&full).map_err(|e| format!("{path}: {e}"))?;
        if meta.len() > MAX_BODY as u64 {
            return Err(format!("{path}: larger than {MAX_BODY} bytes"));
        }
        std::fs::read(&full).map_err(|e| format!("{path}: {e}"))
    }

    fn write_file(&self, path: &str, contents: &[u8]) -> Result<(), String> {
        if contents.len() > MAX_BODY {
            return Err(format!("{path}: larger than {MAX_BODY} bytes"));
        }
        let full = self.resolve(path)?;
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{path}: {e}"))?;
        }
        // Written beside and renamed, so the app never reads half a file.
        let tmp = full.with_extension("bosun-tmp");
        std::fs::write(&tmp, contents)
            .and_then(|()| std::fs::rename(&tmp, &full))
            .map_err(|e| format!("{path}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(dir: &Path) -> LocalPod {
        LocalPod::new(
            PodInfo {
                namespace: "ns".into(),
                name: "p".into(),
                uid: "u".into(),
                node_name: "n".into(),
                labels: "{}".into(),
            },
            dir.to_path_buf(),
        )
    }

    #[test]
    fn files_stay_inside_the_shared_directory() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        p.write_file("conf/app.json", b"{}").expect("write");
        assert_eq!(p.read_file("conf/app.json").expect("read"), b"{}");
        for bad in ["/etc/passwd", "../x", "conf/../../x", ""] {
            assert!(p.read_file(bad).is_err(), "{bad}");
            assert!(p.write_file(bad, b"x").is_err(), "{bad}");
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", dir.path().join("escape")).expect("link");
            let e = p.read_file("escape/hostname").expect_err("symlink");
            assert!(e.contains("outside"), "{e}");
        }
    }

    #[test]
    fn http_reads_a_response_and_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            for (i, conn) in listener.incoming().take(2).enumerate() {
                let mut conn = conn.expect("conn");
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                if i == 0 {
                    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok")
                        .expect("write");
                } else {
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        });
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        let r = p.http_get(port, "/healthz", 1000).expect("get");
        assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
        assert!(r.headers.contains(&("x-a".into(), "b".into())));
        let e = p.http_get(port, "/slow", 100).expect_err("timeout");
        assert!(e.contains("timed out"), "{e}");
        assert!(p.http_get(port, "no-slash", 100).is_err());
        server.join().expect("server");
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"2\r\nok\r\n3\r\n!!!\r\n0\r\n\r\n").expect("chunks"),
            b"ok!!!"
        );
    }
}
