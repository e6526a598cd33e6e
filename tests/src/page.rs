//! What a person gets from `cap-trace report --html`: the page as a real HTML5 parser reads it
//! (html5lib, strict: any parse error fails), and as a real browser draws it (Debian's
//! chromium, headless, offline), with the screenshot decoded to see what it shows. `cargo
//! xtask setup` installs both.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::TempDir;
use crate::consumers::{python_tool, with_stdin};

/// Reads the page with html5lib's strict parser and prints what the tests check, as JSON:
/// every workload row (its identity, whether what it holds is known, each capability cell's
/// state, the excess, the flags, the evidence), the scripts and the attributes naming
/// anything to fetch.
const READ_PAGE: &str = r#"import json, sys, html5lib
text = sys.stdin.buffer.read().decode("utf-8")
parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
try:
    doc = parser.parse(text)
except html5lib.html5parser.ParseError as e:
    sys.exit("parse error: %s (errors: %r)" % (e, parser.errors))
def words(e):
    return " ".join("".join(e.itertext()).split())
rows = []
for tr in doc.iter("tr"):
    if tr.get("class") != "workload":
        continue
    cells = {}
    for span in tr.iter("span"):
        if span.get("data-cap") is not None:
            cells[span.get("data-cap")] = span.get("data-state")
    excess = [s.get("data-excess") for s in tr.iter("span") if s.get("data-excess") is not None]
    code = tr.find(".//code")
    rows.append({
        "identity": tr.get("data-identity"),
        "held": tr.get("data-held"),
        "cells": cells,
        "excess": excess[0] if excess else None,
        "flags": words(code) if code is not None else None,
        "evidence": [d.get("data-cap") for d in tr.iter("div") if d.get("class") == "evidence"],
        "evidence_text": [words(d) for d in tr.iter("div") if d.get("class") == "evidence"],
        "cells_in_td": len(tr.findall("td")),
        "text": words(tr),
    })
fetches = [
    "%s %s=%s" % (e.tag, k, v)
    for e in doc.iter()
    for k, v in e.attrib.items()
    if k in ("src", "href", "srcset", "action", "poster", "data") or "url(" in v
]
print(json.dumps({
    "title": words(doc.find(".//title")),
    "host": words(doc.find(".//*[@id='host']")),
    "rows": rows,
    "scripts": len(list(doc.iter("script"))),
    "fetches": fetches,
}))
"#;

/// The page as html5lib's strict parser reads it; panics on a parse error.
#[track_caller]
pub fn parse(html: &str) -> Value {
    let out = with_stdin(
        Command::new(python_tool("python")).args(["-c", READ_PAGE]),
        html.as_bytes(),
    );
    assert!(
        out.status.success(),
        "html5lib refused the page: {}\n{html}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the reader prints JSON")
}

/// Decodes a PNG (8-bit, RGB or RGBA, not interlaced: what chromium writes) with python's
/// zlib and prints its size and how many pixels have each colour, as JSON.
const READ_PNG: &str = r#"import json, struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, head = 8, b"", None
while pos < len(data):
    (n,) = struct.unpack(">I", data[pos:pos + 4])
    kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        head = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, colour, _, _, interlace = head
assert depth == 8 and colour in (2, 6) and interlace == 0, head
bpp = 3 if colour == 2 else 4
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
counts = {}
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    if f == 1:
        for i in range(bpp, stride):
            line[i] = (line[i] + line[i - bpp]) & 255
    elif f == 2:
        for i in range(stride):
            line[i] = (line[i] + prev[i]) & 255
    elif f == 3:
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
    elif f == 4:
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            line[i] = (line[i] + pred) & 255
    for x in range(0, stride, bpp):
        key = "%02x%02x%02x" % (line[x], line[x + 1], line[x + 2])
        counts[key] = counts.get(key, 0) + 1
    prev = line
print(json.dumps({"width": w, "height": h, "colours": counts}))
"#;

/// A decoded screenshot: its size and how many pixels have each colour (`rrggbb`).
pub struct Screenshot {
    pub width: u64,
    pub height: u64,
    pub colours: serde_json::Map<String, Value>,
}

impl Screenshot {
    /// Pixels of exactly this colour (`rrggbb`).
    pub fn pixels(&self, colour: &str) -> u64 {
        self.colours
            .get(colour)
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }
}

/// Debian's chromium, or None where it is not installed.
pub fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

/// Draws `page` with headless chromium at 1200x900, offline (every host name resolves to
/// nothing, no background networking), and decodes the screenshot.
#[track_caller]
pub fn screenshot(page: &Path) -> Screenshot {
    let chromium = chromium().expect("chromium is installed (cargo xtask setup)");
    let dir = TempDir::new("chromium");
    let png = dir.join("page.png");
    let mut cmd = Command::new(chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--hide-scrollbars",
        "--window-size=1200,900",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .arg(format!("--screenshot={}", png.display()))
    .arg(format!("file://{}", page.display()))
    .env("HOME", dir.path());
    let log = dir.join("chromium.log");
    let mut child = cmd
        .stdout(std::fs::File::create(dir.join("chromium.out")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish in 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        png.exists(),
        "chromium wrote no screenshot: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let out = Command::new("python3")
        .args(["-c", READ_PNG])
        .arg(&png)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the screenshot is not a PNG this reads: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    if let Some(keep) = std::env::var_os("CAP_TRACE_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
    Screenshot {
        width: v["width"].as_u64().unwrap(),
        height: v["height"].as_u64().unwrap(),
        colours: v["colours"].as_object().unwrap().clone(),
    }
}
