//! The `pod` interface as the sidecar serves it: HTTP to the pod's loopback and files
//! under the shared directory, nothing else.

use std::cell::Cell;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bosun_host::contract::{HttpResponse, PodInfo};
use bosun_host::host::pod::Pod;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body as _;
use hyper::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// The largest HTTP response body or file a plugin may read.
const MAX_BODY: usize = 4 * 1024 * 1024;
/// The longest HTTP timeout a plugin may ask for.
const MAX_TIMEOUT_MS: u32 = 30_000;

/// Held while a file is written (see `write_file`).
static WRITING: Mutex<()> = Mutex::new(());

thread_local! {
    /// When the plugin call running on this thread must end (see [`within`]).
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Runs `f` (one plugin call) with the pod's HTTP requests made from it clamped to
/// `deadline`: a plugin asking for a 30 s timeout in a 1 s probe would otherwise hold
/// its thread and instance long after the epoch deadline, which cannot interrupt a host
/// call. Plugin calls run on the calling thread, so the deadline is kept per thread.
pub fn within<R>(deadline: Instant, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Instant>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DEADLINE.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DEADLINE.with(|d| d.replace(Some(deadline))));
    f()
}

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

/// The runtime the pod's HTTP requests run on. The `pod` interface is synchronous (the
/// sidecar calls plugins on blocking threads; tests call them with no runtime at all), so
/// a request runs here while its caller waits, as it waited on a blocking socket before.
fn client_runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("bosun-pod-http")
                .enable_io()
                .enable_time()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| format!("cannot start the HTTP client: {e}"))
}

/// `e` and its sources, `: `-separated (hyper's own messages leave the cause out).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// One HTTP/1.1 request to `127.0.0.1:{port}`, on a connection of its own, answered
/// within `timeout_ms` (at most [`MAX_TIMEOUT_MS`]) with a body of at most [`MAX_BODY`].
fn http(
    port: u16,
    method: Method,
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
    let what = format!("{method} {path}");
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, format!("127.0.0.1:{port}"))
        .header(CONNECTION, "close")
        .header(USER_AGENT, "bosun-sidecar")
        .header(CONTENT_LENGTH, body.len());
    if let Some(ct) = content_type {
        request = request.header(
            CONTENT_TYPE,
            HeaderValue::from_bytes(ct.as_bytes())
                .map_err(|e| format!("{what}: content type {ct:?}: {e}"))?,
        );
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .map_err(|e| format!("{what}: {e}"))?;
    let asked = Duration::from_millis(u64::from(timeout_ms.clamp(1, MAX_TIMEOUT_MS)));
    let (timeout, why) = match DEADLINE.with(Cell::get) {
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{what}: the plugin call's deadline has passed"));
            }
            if left < asked {
                (left, " (what was left of the plugin call's deadline)")
            } else {
                (asked, "")
            }
        }
        None => (asked, ""),
    };
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let call = what.clone();
    client_runtime()?.spawn(async move {
        let _ = tx.send(exchange(port, request, timeout, why, &call).await);
    });
    rx.recv()
        .map_err(|_| format!("{what}: the HTTP client stopped"))?
}

/// Connects, sends `request` and reads the whole response, all before `timeout`.
async fn exchange(
    port: u16,
    request: Request<Full<Bytes>>,
    timeout: Duration,
    why: &str,
    what: &str,
) -> Result<HttpResponse, String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = match tokio::time::timeout_at(
        deadline,
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await
    {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(format!("connect to 127.0.0.1:{port}: {e}")),
        Err(_) => return Err(format!("connect to 127.0.0.1:{port}: connection timed out")),
    };
    let failed = |e: hyper::Error| {
        if e.is_parse_too_large() {
            // hyper's words for it ("message head is too large") hide the usual cause.
            format!("{what}: the response head is too large or its Content-Length out of range")
        } else if e.is_parse() || e.is_parse_status() {
            format!("{what}: not an HTTP/1.x response: {}", chain(&e))
        } else {
            format!("{what}: {}", chain(&e))
        }
    };
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            // The header names apps have always received from the sidecar.
            .title_case_headers(true)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(failed)?;
        let response = async {
            let response = sender.send_request(request).await.map_err(failed)?;
            let (head, body) = response.into_parts();
            let too_large = || format!("{what}: response larger than {MAX_BODY} bytes");
            if body.size_hint().lower() > MAX_BODY as u64 {
                return Err(too_large());
            }
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| {
                    if e.is::<LengthLimitError>() {
                        too_large()
                    } else {
                        format!("{what}: {}", chain(&*e))
                    }
                })?
                .to_bytes();
            Ok(HttpResponse {
                status: head.status.as_u16(),
                headers: head
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_owned(),
                            String::from_utf8_lossy(v.as_bytes()).trim().to_owned(),
                        )
                    })
                    .collect(),
                body: body.to_vec(),
            })
        };
        // The connection is driven beside the request. It may finish first (the server
        // closes once the response is sent): what it read is still there to collect.
        tokio::pin!(response, conn);
        tokio::select! {
            biased;
            r = &mut response => r,
            _ = &mut conn => response.await,
        }
    };
    tokio::time::timeout_at(deadline, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "{what}: timed out after {} ms{why}",
                timeout.as_millis()
            ))
        })
}

impl Pod for LocalPod {
    fn info(&self) -> PodInfo {
        self.info.clone()
    }

    fn http_get(&self, port: u16, path: &str, timeout_ms: u32) -> Result<HttpResponse, String> {
        http(port, Method::GET, path, None, &[], timeout_ms)
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
        http(
            port,
            Method::POST,
            path,
            Some(content_type),
            body,
            timeout_ms,
        )
    }

    fn read_file(&self, path: &str) -> Result<Vec<u8>, String> {
        let full = self.resolve(path)?;
        let file = open_regular(&full).map_err(|e| format!("{path}: {e}"))?;
        // The size was checked on the open file, but it may grow: read one byte past the
        // cap to tell.
        let mut contents = Vec::new();
        file.take(MAX_BODY as u64 + 1)
            .read_to_end(&mut contents)
            .map_err(|e| format!("{path}: {e}"))?;
        if contents.len() > MAX_BODY {
            return Err(format!("{path}: larger than {MAX_BODY} bytes"));
        }
        Ok(contents)
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
        let mut name = full.file_name().unwrap_or_default().to_owned();
        name.push(".bosun-tmp");
        let tmp = full.with_file_name(name);
        // One write at a time: two plugin calls writing the same file must not remove
        // each other's temporary file.
        let _writing = WRITING.lock().unwrap_or_else(PoisonError::into_inner);
        write_new(&tmp, contents)
            .and_then(|()| std::fs::rename(&tmp, &full))
            .map_err(|e| format!("{path}: {e}"))
    }
}

/// Opens `path` for reading if it is a regular file of at most [`MAX_BODY`] bytes. A
/// symlink is not followed (the app or another plugin may have swapped one in after
/// [`LocalPod::resolve`] looked), and a FIFO or device is refused without blocking on it.
fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    #[cfg(not(unix))]
    if std::fs::symlink_metadata(path)?.file_type().is_symlink() {
        return Err(std::io::Error::other("a symbolic link; refused"));
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return std::io::Error::other("a symbolic link; refused");
        }
        e
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file; refused"));
    }
    if meta.len() > MAX_BODY as u64 {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_BODY} bytes"
        )));
    }
    Ok(file)
}

/// Writes `contents` to `tmp`, a file this call creates: whatever is already there
/// (a leftover of a crash, or a symlink planted to redirect the write; not another
/// write's, they hold [`WRITING`]) is removed, not followed or written through.
fn write_new(tmp: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let create = || {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        options.open(tmp)
    };
    let mut file = match create() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            // `remove_file` removes a symlink itself, never its target.
            std::fs::remove_file(tmp)?;
            create()?
        }
        other => other?,
    };
    file.write_all(contents)?;
    file.sync_data()
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

    #[cfg(unix)]
    #[test]
    fn only_regular_files_are_read_and_never_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        p.write_file("conf/app.json", b"{}").expect("write");
        // A symlink inside the shared directory is not followed either: the app could
        // swap it between the check and the open.
        std::os::unix::fs::symlink(dir.path().join("conf/app.json"), dir.path().join("alias"))
            .expect("link");
        let e = p.read_file("alias").expect_err("symlink");
        assert!(e.contains("symbolic link"), "{e}");
        // A FIFO with no writer is refused at once instead of blocking the call.
        let status = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .expect("mkfifo");
        assert!(status.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = p.clone();
        std::thread::spawn(move || {
            let _ = tx.send(reader.read_file("fifo"));
        });
        let e = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("read_file blocked on a FIFO")
            .expect_err("fifo");
        assert!(e.contains("not a regular file"), "{e}");
        // A file over the cap is refused before it is read.
        std::fs::File::create(dir.path().join("big"))
            .and_then(|f| f.set_len(MAX_BODY as u64 + 1))
            .expect("big");
        let e = p.read_file("big").expect_err("big");
        assert!(e.contains(&format!("larger than {MAX_BODY} bytes")), "{e}");
        std::fs::create_dir(dir.path().join("d")).expect("dir");
        assert!(
            p.read_file("d")
                .expect_err("dir")
                .contains("not a regular file")
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_temporary_file_is_created_not_written_through() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = tempfile::tempdir().expect("outside");
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"precious").expect("victim");
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).expect("shared");
        let p = pod(&shared);
        // Planted where the write goes first, before the rename.
        std::os::unix::fs::symlink(&victim, shared.join("settings.bosun-tmp")).expect("link");
        p.write_file("settings", b"new").expect("write");
        assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
        assert_eq!(p.read_file("settings").expect("read"), b"new");
        assert!(!shared.join("settings.bosun-tmp").exists());
        // A leftover temporary file of a crash does not block the next write.
        std::fs::write(shared.join("settings.bosun-tmp"), b"half").expect("leftover");
        p.write_file("settings", b"again").expect("write again");
        assert_eq!(p.read_file("settings").expect("read"), b"again");
    }

    #[test]
    fn http_is_clamped_to_what_is_left_of_the_call() {
        let (port, server) = serve(vec![Vec::new()]);
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        let deadline = Instant::now() + Duration::from_millis(150);
        // The plugin asks for 30 s; the call it runs in has 150 ms left.
        let e = within(deadline, || p.http_get(port, "/slow", 30_000)).expect_err("clamped");
        assert!(
            e.starts_with("GET /slow: timed out after ") && e.ends_with("plugin call's deadline)"),
            "{e}"
        );
        let e = within(Instant::now(), || p.http_get(port, "/late", 30_000)).expect_err("late");
        assert_eq!(e, "GET /late: the plugin call's deadline has passed");
        server.join().expect("server");
    }

    #[test]
    fn huge_or_invalid_content_lengths_are_errors() {
        let too_large = format!("GET /len: response larger than {MAX_BODY} bytes");
        let invalid = "GET /len: not an HTTP/1.x response: invalid content-length parsed";
        let out_of_range =
            "GET /len: the response head is too large or its Content-Length out of range";
        let cases = [
            // Refused by the cap before anything of that size is allocated.
            ("Content-Length: 4294967296", too_large.as_str()),
            ("Content-Length: 18446744073709551614", out_of_range),
            ("Content-Length: 18446744073709551615", out_of_range),
            ("Content-Length: 18446744073709551616", invalid),
            ("Content-Length: 99999999999999999999999999", invalid),
            ("Content-Length: -1", invalid),
            ("Content-Length: 12abc", invalid),
            ("Content-Length: 1\r\nContent-Length: 2", invalid),
        ];
        let (port, server) = serve(
            cases
                .iter()
                .map(|(h, _)| format!("HTTP/1.1 200 OK\r\n{h}\r\n\r\nx").into_bytes())
                .collect(),
        );
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        for (h, expected) in cases {
            let e = p.http_get(port, "/len", 5000).expect_err(h);
            assert_eq!(e, expected, "{h}");
        }
        server.join().expect("server");
    }

    /// A server on the loopback that answers each of `responses` to one connection, in
    /// order, and hands back the requests it read (head and body).
    fn serve(responses: Vec<Vec<u8>>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for response in responses {
                let (mut conn, _) = listener.accept().expect("accept");
                let mut raw = Vec::new();
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    raw.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&raw);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .and_then(|v| v.parse().ok())
                            .unwrap_or(0);
                        if body.len() >= len {
                            break;
                        }
                    }
                }
                requests.push(String::from_utf8_lossy(&raw).into_owned());
                if response.is_empty() {
                    // No answer: the client must give up on its own.
                    std::thread::sleep(Duration::from_millis(500));
                } else {
                    // The client may hang up before all of a too large response is sent.
                    let _ = conn.write_all(&response);
                }
            }
            requests
        });
        (port, server)
    }

    #[test]
    fn http_reads_a_response_and_times_out() {
        let (port, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nok".to_vec(),
            Vec::new(),
        ]);
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        let r = p.http_get(port, "/healthz", 1000).expect("get");
        assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
        assert!(
            r.headers.contains(&("x-a".into(), "b".into())),
            "{:?}",
            r.headers
        );
        let e = p.http_get(port, "/slow", 100).expect_err("timeout");
        assert_eq!(e, "GET /slow: timed out after 100 ms");
        assert!(p.http_get(port, "no-slash", 100).is_err());
        assert!(p.http_get(port, "/a b", 100).is_err());
        let requests = server.join().expect("server");
        assert!(
            requests[0].starts_with("GET /healthz HTTP/1.1\r\n"),
            "{}",
            requests[0]
        );
        for header in [
            format!("Host: 127.0.0.1:{port}"),
            "Connection: close".to_owned(),
            "User-Agent: bosun-sidecar".to_owned(),
            "Content-Length: 0".to_owned(),
        ] {
            assert!(
                requests[0].contains(&format!("\r\n{header}\r\n")),
                "{header}: {}",
                requests[0]
            );
        }
    }

    #[test]
    fn http_posts_a_body_with_its_type() {
        let (port, server) = serve(vec![b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()]);
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        let r = p
            .http_post(
                port,
                "/-/reload?now=1",
                "application/json",
                b"{\"a\":1}",
                1000,
            )
            .expect("post");
        assert_eq!((r.status, r.body.len()), (204, 0));
        let requests = server.join().expect("server");
        let request = &requests[0];
        assert!(
            request.starts_with("POST /-/reload?now=1 HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("\r\nContent-Type: application/json\r\n"),
            "{request}"
        );
        assert!(request.contains("\r\nContent-Length: 7\r\n"), "{request}");
        assert_eq!(request.matches("Content-Length").count(), 1, "{request}");
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request}");
        assert!(
            p.http_post(port, "/", "text/plain\r\nX: y", b"", 100)
                .is_err()
        );
    }

    #[test]
    fn chunked_and_unsized_bodies_are_read_whole() {
        let (port, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3;x=y\r\n!!!\r\n0\r\n\r\n".to_vec(),
            b"HTTP/1.0 200 OK\r\n\r\nuntil the end".to_vec(),
        ]);
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        assert_eq!(p.http_get(port, "/", 1000).expect("chunked").body, b"ok!!!");
        assert_eq!(
            p.http_get(port, "/", 1000).expect("unsized").body,
            b"until the end"
        );
        server.join().expect("server");
    }

    #[test]
    fn bodies_over_the_cap_and_garbage_are_refused() {
        let mut endless = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        endless.resize(endless.len() + MAX_BODY + 1, b'x');
        let (port, server) = serve(vec![
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_BODY + 1
            )
            .into_bytes(),
            endless,
            b"SSH-2.0-OpenSSH_9.6\r\n\r\n".to_vec(),
        ]);
        let dir = tempfile::tempdir().expect("tmp");
        let p = pod(dir.path());
        let too_large = format!("GET /big: response larger than {MAX_BODY} bytes");
        assert_eq!(
            p.http_get(port, "/big", 5000).expect_err("declared"),
            too_large
        );
        assert_eq!(p.http_get(port, "/big", 5000).expect_err("sent"), too_large);
        let e = p.http_get(port, "/ssh", 1000).expect_err("not http");
        assert!(e.starts_with("GET /ssh: not an HTTP/1.x response"), "{e}");
        server.join().expect("server");
    }

    #[test]
    fn a_closed_port_is_named() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let dir = tempfile::tempdir().expect("tmp");
        let e = pod(dir.path())
            .http_get(port, "/", 1000)
            .expect_err("closed");
        assert!(
            e.starts_with(&format!("connect to 127.0.0.1:{port}: ")),
            "{e}"
        );
    }
}
