//! The control socket, both ends: the daemon's listener (bound root-only, connections capped,
//! requests framed as docs/control-api.md says) and the client `status`, `profile` and
//! `export` use.
//!
//! The daemon answers on one loop; each connection is a task of its own that reads requests,
//! hands them to the loop ([`Ask`]) and writes the answers. A `profiles` answer is the profiles'
//! JSON as the daemon holds it (shared, not copied per connection) written out piece by piece.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncWriteExt as _, BufReader, BufWriter};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::error::Failure;
use crate::model::control::{Reply, Request};

/// Largest request line accepted.
pub(super) const MAX_REQUEST: usize = 64 * 1024;

/// A connection that sends nothing for this long is closed.
const IDLE: Duration = Duration::from_secs(60);

/// Most connections open at once (fewer when the descriptor limit is low: see [`cap`]).
const MAX_CONNECTIONS: usize = 64;

/// What the daemon's loop answers.
pub(super) enum Answer {
    Reply(Box<Reply>),
    /// `{"ok":true,"profiles":[...]}` made of each profile's JSON as the daemon holds it.
    Profiles(Vec<Arc<str>>),
}

/// A request, handed from a connection to the daemon's loop.
pub(super) struct Ask {
    pub(super) request: Request,
    pub(super) answer: oneshot::Sender<Answer>,
}

/// The bound socket file: removed when the daemon ends, however it ends (unless another
/// daemon's socket has taken its place meanwhile).
pub(super) struct Bound {
    path: PathBuf,
    inode: u64,
}

impl Drop for Bound {
    fn drop(&mut self) {
        use std::os::unix::fs::MetadataExt as _;
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.inode) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds the control socket: root-only, replacing a stale socket but never a live daemon's.
pub(super) fn bind(path: &Path) -> Result<(UnixListener, Bound), Failure> {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::environment(format!("cannot create {}: {e}", dir.display())))?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Failure::environment(format!(
                "another cap-trace daemon answers on {}: stop it, or pass another --socket",
                path.display()
            )));
        }
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Failure::environment(format!("cannot listen on {}: {e}", path.display())))?;
    let bound = Bound {
        path: path.to_owned(),
        inode: std::fs::symlink_metadata(path).map_or(0, |m| m.ino()),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Failure::environment(format!("cannot protect {}: {e}", path.display())))?;
    Ok((listener, bound))
}

/// How many connections may be open at once: [`MAX_CONNECTIONS`], or a quarter of the
/// descriptor limit when that is lower (the daemon needs the rest for its own files).
pub(super) fn cap() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit with a valid struct.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    (soft / 4).clamp(4, MAX_CONNECTIONS)
}

/// Raises the soft descriptor limit to the hard one (what a service manager's default allows).
pub(super) fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) == 0
            && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit);
        }
    }
}

/// One open connection: whether it waits for a request (and since when), and its task.
struct Connection {
    /// Milliseconds since [`Connections::epoch`] it has been waiting for a request since, or
    /// 0 while a request is being answered.
    idle_since: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

/// The open connections, at most [`cap`] of them. When a new one comes at the cap, the one
/// that has waited longest for a request makes room for it: a client that opens connections
/// and says nothing cannot keep `status` out.
pub(super) struct Connections {
    cap: usize,
    epoch: Instant,
    open: Vec<Connection>,
}

impl Connections {
    pub(super) fn new(cap: usize) -> Connections {
        Connections {
            cap,
            epoch: Instant::now(),
            open: Vec::new(),
        }
    }

    /// Serves a new connection, making room for it if need be.
    pub(super) fn admit(&mut self, stream: UnixStream, asks: mpsc::Sender<Ask>) {
        self.open.retain(|c| !c.task.is_finished());
        if self.open.len() >= self.cap && !self.close_idlest() {
            // Every connection is being answered right now: this one is told to come back.
            tokio::spawn(refuse(stream));
            return;
        }
        let idle_since = Arc::new(AtomicU64::new(self.now()));
        let task = tokio::spawn(serve(stream, asks, idle_since.clone(), self.epoch));
        self.open.push(Connection { idle_since, task });
    }

    /// Closes the connection that has waited longest for a request; false if none waits.
    pub(super) fn close_idlest(&mut self) -> bool {
        self.open.retain(|c| !c.task.is_finished());
        let idlest = self
            .open
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let since = c.idle_since.load(Ordering::Relaxed);
                (since != 0).then_some((since, i))
            })
            .min();
        match idlest {
            Some((_, i)) => {
                self.open.swap_remove(i).task.abort();
                true
            }
            None => false,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.open.iter().filter(|c| !c.task.is_finished()).count()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }
}

/// Tells a connection there is no room for it now, and closes it.
async fn refuse(stream: UnixStream) {
    let (_, mut write) = stream.into_split();
    let reply = Reply::error("the daemon is answering as many connections as it takes: retry");
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        write.write_all(reply_line(&reply).as_bytes()),
    )
    .await;
}

/// One request line, as read.
enum Line {
    End,
    Request(Vec<u8>),
    /// Longer than [`MAX_REQUEST`]: read to its end and dropped.
    TooLong,
}

/// Reads a line of at most [`MAX_REQUEST`] bytes; a longer one is read to its end without
/// being kept.
async fn read_line(reader: &mut (impl AsyncBufRead + Unpin)) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Line::End
            } else if too_long {
                Line::TooLong
            } else {
                Line::Request(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_REQUEST {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Request(line)
            });
        }
    }
}

/// Serves one connection: requests line by line, each answered by the daemon's loop, for as
/// long as the client sends them. Only root may ask (the socket is 0600 too, but a descriptor
/// can be passed on).
async fn serve(
    stream: UnixStream,
    asks: mpsc::Sender<Ask>,
    idle_since: Arc<AtomicU64>,
    epoch: Instant,
) {
    let uid = stream.peer_cred().map_or(u32::MAX, |c| c.uid());
    let (read, write) = stream.into_split();
    let mut write = BufWriter::new(write);
    if uid != 0 {
        let reply = Reply::error("permission denied: the cap-trace control socket is root-only");
        let _ = write.write_all(reply_line(&reply).as_bytes()).await;
        let _ = write.flush().await;
        return;
    }
    let mut reader = BufReader::new(read);
    loop {
        // Idle for a minute, or the connection broke: close.
        let Ok(Ok(line)) = tokio::time::timeout(IDLE, read_line(&mut reader)).await else {
            return;
        };
        idle_since.store(0, Ordering::Relaxed);
        let answer = match line {
            Line::End => return,
            Line::TooLong => Answer::Reply(Box::new(Reply::error(format!(
                "request too large (limit {MAX_REQUEST} bytes per line)"
            )))),
            Line::Request(bytes) => match parse(&bytes) {
                Err(message) => Answer::Reply(Box::new(Reply::error(message))),
                Ok(request) => {
                    let (tx, rx) = oneshot::channel();
                    if asks
                        .send(Ask {
                            request,
                            answer: tx,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    match rx.await {
                        Ok(answer) => answer,
                        Err(_) => return,
                    }
                }
            },
        };
        if write_answer(&mut write, answer).await.is_err() {
            return;
        }
        idle_since.store(
            u64::try_from(epoch.elapsed().as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
            Ordering::Relaxed,
        );
    }
}

/// A request line, or why it is not one.
fn parse(bytes: &[u8]) -> Result<Request, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        "malformed request: not UTF-8 (expected one JSON object per line)".to_owned()
    })?;
    serde_json::from_str::<Request>(text.trim()).map_err(|e| {
        format!(
            "malformed request: {e} (expected {{\"request\": \"status\"|\"profile\"|\"profiles\"}})"
        )
    })
}

async fn write_answer(
    write: &mut BufWriter<tokio::net::unix::OwnedWriteHalf>,
    answer: Answer,
) -> std::io::Result<()> {
    match answer {
        Answer::Reply(reply) => write.write_all(reply_line(&reply).as_bytes()).await?,
        Answer::Profiles(profiles) => {
            write.write_all(br#"{"ok":true,"profiles":["#).await?;
            for (i, json) in profiles.iter().enumerate() {
                if i > 0 {
                    write.write_all(b",").await?;
                }
                write.write_all(json.as_bytes()).await?;
            }
            write.write_all(b"]}\n").await?;
        }
    }
    write.flush().await
}

fn reply_line(reply: &Reply) -> String {
    let mut s = serde_json::to_string(reply).expect("reply serializes");
    s.push('\n');
    s
}

/// A client of the control socket: sends one request, returns the reply.
pub async fn ask(socket: &Path, request: &Request) -> Result<Reply, Failure> {
    let stream = UnixStream::connect(socket).await.map_err(|e| {
        let fix = match e.kind() {
            std::io::ErrorKind::PermissionDenied => "the control socket is root-only: run as root",
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                "is `cap-trace daemon` running? (pass --socket if it listens elsewhere)"
            }
            _ => "check --socket",
        };
        Failure::environment(format!("cannot reach {}: {e}; {fix}", socket.display()))
    })?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_string(request).expect("request serializes");
    line.push('\n');
    // The daemon may answer (a refusal) and close before reading the request: its reply is
    // still there to read, so a failed write is only reported if no reply comes.
    let sent = write.write_all(line.as_bytes()).await;
    let mut reply = String::new();
    let received = BufReader::new(read).read_line(&mut reply).await;
    match (sent, received) {
        (_, Ok(n)) if n > 0 => {}
        (Err(e), _) | (_, Err(e)) => return Err(Failure::runtime(format!("control socket: {e}"))),
        (Ok(()), Ok(_)) => {
            return Err(Failure::runtime(
                "control socket: the daemon closed the connection without a reply",
            ));
        }
    }
    let reply: Reply = serde_json::from_str(&reply)
        .map_err(|e| Failure::runtime(format!("control socket: unreadable reply: {e}")))?;
    if !reply.ok {
        return Err(Failure::runtime(
            reply.error.unwrap_or_else(|| "request failed".into()),
        ));
    }
    Ok(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_strictly() {
        assert_eq!(
            parse(br#"{"request":"status"}"#).unwrap(),
            Request::Status {}
        );
        assert_eq!(
            parse(br#"{"request":"profile","name":"web"}"#).unwrap(),
            Request::Profile { name: "web".into() }
        );
        for bad in [
            &b""[..],
            b"{",
            br#"{"request":"reboot"}"#,
            br#"{"request":"profile"}"#,
            br#"{"request":"status","x":1}"#,
            b"[1,2]",
        ] {
            assert!(parse(bad).unwrap_err().contains("malformed request"));
        }
        assert!(parse(b"\xff\xfe").unwrap_err().contains("not UTF-8"));
    }

    #[tokio::test]
    async fn lines_are_framed_and_long_ones_dropped_whole() {
        let long = "x".repeat(MAX_REQUEST + 10);
        let input = format!("one\n{long}\ntwo\n\nlast");
        let mut reader = BufReader::with_capacity(100, input.as_bytes());
        let mut lines = Vec::new();
        loop {
            match read_line(&mut reader).await.unwrap() {
                Line::End => break,
                Line::TooLong => lines.push("<too long>".to_owned()),
                Line::Request(b) => lines.push(String::from_utf8(b).unwrap()),
            }
        }
        assert_eq!(lines, ["one", "<too long>", "two", "", "last"]);
        let exactly = format!("{}\n", "y".repeat(MAX_REQUEST));
        let mut reader = BufReader::new(exactly.as_bytes());
        assert!(matches!(
            read_line(&mut reader).await.unwrap(),
            Line::Request(b) if b.len() == MAX_REQUEST
        ));
    }
}
