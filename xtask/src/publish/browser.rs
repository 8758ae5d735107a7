//! A real headless Chromium for the page's tests, driven over the DevTools protocol on
//! `--remote-debugging-pipe` (JSON messages, each ended by a NUL byte, on the browser's fd 3 and 4):
//! a window of a given size, a page loaded up to its load event (no polling), expressions
//! evaluated in it, real key presses (a script cannot move keyboard focus with a synthetic Tab) and
//! screenshots of what the window shows. No crate: a pipe, serde_json and a base64 decoder cover
//! the handful of commands the tests send, and nothing listens on a port.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Browser {
    child: Child,
    to: std::fs::File,
    from: BufReader<std::fs::File>,
    next: u64,
    session: String,
    /// Events read while waiting for a reply (the page's uncaught exceptions among them).
    events: Vec<Value>,
    /// Dropped with the browser: until then a watchdog kills a browser that outlives `LIMIT`,
    /// so that a hung Chromium fails the test (its pipe closes) instead of hanging it.
    _watchdog: std::sync::mpsc::Sender<()>,
}

/// How long one browser may live.
const LIMIT: Duration = Duration::from_secs(300);

impl Browser {
    /// Starts `chromium` (its profile in `profile`) with one page `width` × `height` CSS pixels.
    pub fn launch(chromium: &str, profile: &Path, width: u32, height: u32) -> Browser {
        let (cmd_read, cmd_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (out_read, out_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let (r, w) = (cmd_read.as_raw_fd(), out_write.as_raw_fd());
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless=new",
                "--remote-debugging-pipe",
                "--no-sandbox",
                "--disable-gpu",
                // A container's /dev/shm is often 64 MiB, too small for a renderer.
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: fcntl and dup2 are async-signal-safe. The pipe ends are first copied above 10, so
        // that putting one on fd 3 cannot close the other before it is copied to fd 4.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(move || {
                let (a, b) = (libc::fcntl(r, libc::F_DUPFD, 10), libc::fcntl(w, libc::F_DUPFD, 10));
                if a < 0 || b < 0 || libc::dup2(a, 3) < 0 || libc::dup2(b, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("starting {chromium}: {e}"));
        drop((cmd_read, out_write));
        let (watchdog, done) = std::sync::mpsc::channel::<()>();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = done.recv_timeout(LIMIT) {
                eprintln!("chromium still running after {LIMIT:?}: killed");
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        });
        let file = |fd: OwnedFd| std::fs::File::from(fd);
        let mut b = Browser {
            child,
            to: file(cmd_write),
            from: BufReader::new(file(out_read)),
            next: 0,
            session: String::new(),
            events: Vec::new(),
            _watchdog: watchdog,
        };
        let targets = b.call("Target.getTargets", json!({}));
        let page = targets["targetInfos"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .map(|t| t["targetId"].clone())
            .unwrap_or_else(|| {
                b.call("Target.createTarget", json!({"url": "about:blank"}))["targetId"].clone()
            });
        let attached = b.call("Target.attachToTarget", json!({"targetId": page, "flatten": true}));
        b.session = attached["sessionId"].as_str().expect("a session id").to_string();
        b.call("Page.enable", json!({}));
        b.call("Runtime.enable", json!({}));
        b.resize(width, height);
        b
    }

    /// The page's viewport, `width` × `height` CSS pixels.
    pub fn resize(&mut self, width: u32, height: u32) {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
    }

    /// Sends one command (to the page once attached) and returns its result; events that come
    /// first are kept. A protocol error fails the test with the command.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).unwrap_or_else(|e| panic!("sending {method} to chromium: {e}"));
        loop {
            let m = self.read();
            if m["id"] == json!(id) {
                if let Some(e) = m.get("error") {
                    panic!("chromium refused {method}: {e}");
                }
                return m["result"].clone();
            }
            self.events.push(m);
        }
    }

    fn read(&mut self) -> Value {
        let mut buf = Vec::new();
        let n = self.from.read_until(0, &mut buf).expect("reading from chromium");
        assert!(n > 0 && buf.last() == Some(&0), "chromium closed its DevTools pipe");
        buf.pop();
        serde_json::from_slice(&buf).expect("a DevTools message")
    }

    /// Loads `url` and waits for its load event.
    pub fn navigate(&mut self, url: &str) {
        self.events.retain(|e| e["method"] != "Page.loadEventFired");
        self.call("Page.navigate", json!({"url": url}));
        self.wait_event("Page.loadEventFired");
    }

    /// The next event named `method` (one already read first).
    pub fn wait_event(&mut self, method: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["method"] == method) {
            return self.events.remove(i);
        }
        loop {
            let m = self.read();
            if m["method"] == method {
                return m;
            }
            self.events.push(m);
        }
    }

    /// Loads `url`, whose inline script has run by its load event: it must have set `data-ready`
    /// on the body (else the page's uncaught exceptions are in the message).
    pub fn open(&mut self, url: &str) {
        self.navigate(url);
        if self.eval("document.body && document.body.dataset.ready") != json!("1") {
            let thrown: Vec<&Value> =
                self.events.iter().filter(|e| e["method"] == "Runtime.exceptionThrown").collect();
            panic!("the page's script did not finish loading {url}; it threw: {thrown:?}");
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited); an exception fails the
    /// test with its text.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("the page threw on `{expression}`: {e}");
        }
        r["result"]["value"].clone()
    }

    /// One real key press (down and up), as a keyboard sends it: `Tab`, `Enter` (which types a
    /// carriage return, as activating a button needs).
    pub fn press(&mut self, key: &str, code: u32) {
        let mut down = json!({"type": "rawKeyDown", "key": key, "code": key, "windowsVirtualKeyCode": code,
                              "nativeVirtualKeyCode": code});
        if key == "Enter" {
            down["type"] = json!("keyDown");
            down["text"] = json!("\r");
        }
        self.call("Input.dispatchKeyEvent", down.clone());
        down["type"] = json!("keyUp");
        down.as_object_mut().expect("an object").remove("text");
        self.call("Input.dispatchKeyEvent", down);
    }

    /// What the window shows now, as a PNG file.
    pub fn screenshot(&mut self, png: &Path) {
        let shot = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let bytes = base64(shot["data"].as_str().expect("screenshot data"));
        std::fs::write(png, bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the protocol's binary data), padding allowed.
fn base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {:?}", c as char),
    };
    let digits: Vec<u8> =
        text.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, d)| n | (u32::from(*d) << (18 - 6 * i)));
        out.extend(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes() {
    assert_eq!(base64("aGVsbG8gd29ybGQ="), b"hello world");
    assert_eq!(base64("YQ=="), b"a");
    assert_eq!(base64("YWI="), b"ab");
}
