//! NAR (Nix ARchive) reading and writing.
//!
//! [`NarValidator`] is a push parser: bytes are fed as they arrive off the
//! network and it keeps only the current token, so a multi-gigabyte upload is
//! validated in constant memory. Written by hand because the NAR crates on
//! crates.io are pull-based over a whole `Read` and cannot sit inside an async
//! upload stream. It rejects everything Nix itself would refuse to unpack:
//! unknown tokens, unsorted or duplicate entries, and entry names that could
//! traverse (`""`, `.`, `..`, `/`, NUL).

use thiserror::Error;

pub const MAGIC: &[u8] = b"nix-archive-1";
/// Longest non-contents string: symlink targets are at most PATH_MAX.
const MAX_TOKEN: u64 = 4096;
/// Bounds the parser stack (and so directory nesting) against hostile input.
const MAX_STACK: usize = 6 * 1024;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum NarError {
    #[error("malformed NAR at byte {offset}: {reason}")]
    Malformed { offset: u64, reason: String },
    #[error("NAR ended early at byte {0}")]
    Truncated(u64),
}

#[derive(Debug)]
enum Lex {
    Len { buf: [u8; 8], have: usize },
    Str { buf: Vec<u8>, want: usize },
    Blob { remaining: u64 },
    Pad { remaining: usize },
}

#[derive(Debug)]
enum State {
    Magic,
    NodeOpen,
    TypeKw,
    TypeVal,
    RegularAttr,
    ExecEmpty,
    ContentsKw,
    Contents,
    NodeClose,
    TargetKw,
    Target,
    DirEntry { last: Option<Vec<u8>> },
    EntryOpen,
    EntryNameKw,
    EntryName,
    EntryNodeKw,
    EntryClose,
}

/// Validates a NAR fed in pieces. Call [`NarValidator::finish`] at the end.
#[derive(Debug)]
pub struct NarValidator {
    lex: Lex,
    stack: Vec<State>,
    offset: u64,
    pending_pad: usize,
}

impl Default for NarValidator {
    fn default() -> Self {
        Self::new()
    }
}

impl NarValidator {
    pub fn new() -> Self {
        NarValidator {
            lex: Lex::Len {
                buf: [0; 8],
                have: 0,
            },
            stack: vec![State::NodeOpen, State::Magic],
            offset: 0,
            pending_pad: 0,
        }
    }

    fn err(&self, reason: impl Into<String>) -> NarError {
        NarError::Malformed {
            offset: self.offset,
            reason: reason.into(),
        }
    }

    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), NarError> {
        while !data.is_empty() {
            if self.stack.is_empty() && matches!(self.lex, Lex::Len { .. }) {
                return Err(self.err("trailing data after the root node"));
            }
            let used = match &mut self.lex {
                Lex::Len { buf, have } => {
                    let n = (8 - *have).min(data.len());
                    buf[*have..*have + n].copy_from_slice(&data[..n]);
                    *have += n;
                    if *have == 8 {
                        let len = u64::from_le_bytes(*buf);
                        self.offset += n as u64;
                        self.start_string(len)?;
                        data = &data[n..];
                        continue;
                    }
                    n
                }
                Lex::Str { buf, want } => {
                    let n = (*want - buf.len()).min(data.len());
                    buf.extend_from_slice(&data[..n]);
                    if buf.len() == *want {
                        let token = std::mem::take(buf);
                        self.offset += n as u64;
                        self.lex = Lex::Pad {
                            remaining: self.pending_pad,
                        };
                        self.on_token(token)?;
                        self.after_pad_check();
                        data = &data[n..];
                        continue;
                    }
                    n
                }
                Lex::Blob { remaining } => {
                    let n = (*remaining).min(data.len() as u64) as usize;
                    *remaining -= n as u64;
                    if *remaining == 0 {
                        self.offset += n as u64;
                        self.lex = Lex::Pad {
                            remaining: self.pending_pad,
                        };
                        self.stack.pop(); // Contents
                        self.after_pad_check();
                        data = &data[n..];
                        continue;
                    }
                    n
                }
                Lex::Pad { remaining } => {
                    let n = (*remaining).min(data.len());
                    if let Some(at) = data[..n].iter().position(|&b| b != 0) {
                        // The offending byte's offset, not the piece's: the
                        // error must not depend on how the NAR was split.
                        return Err(NarError::Malformed {
                            offset: self.offset + at as u64,
                            reason: "non-zero padding".into(),
                        });
                    }
                    *remaining -= n;
                    if *remaining == 0 {
                        self.lex = Lex::Len {
                            buf: [0; 8],
                            have: 0,
                        };
                    }
                    n
                }
            };
            self.offset += used as u64;
            data = &data[used..];
        }
        Ok(())
    }

    fn after_pad_check(&mut self) {
        if let Lex::Pad { remaining: 0 } = self.lex {
            self.lex = Lex::Len {
                buf: [0; 8],
                have: 0,
            };
        }
    }

    fn start_string(&mut self, len: u64) -> Result<(), NarError> {
        self.pending_pad = ((8 - len % 8) % 8) as usize;
        if matches!(self.stack.last(), Some(State::Contents)) {
            self.lex = Lex::Blob { remaining: len };
            if len == 0 {
                self.stack.pop();
                self.lex = Lex::Pad {
                    remaining: self.pending_pad,
                };
                self.after_pad_check();
            }
            return Ok(());
        }
        if len > MAX_TOKEN {
            return Err(self.err(format!("string of {len} bytes where a token was expected")));
        }
        self.lex = Lex::Str {
            buf: Vec::with_capacity(len as usize),
            want: len as usize,
        };
        if len == 0 {
            self.lex = Lex::Pad { remaining: 0 };
            self.on_token(Vec::new())?;
            self.after_pad_check();
        }
        Ok(())
    }

    fn expect(&self, token: &[u8], want: &str) -> Result<(), NarError> {
        if token == want.as_bytes() {
            Ok(())
        } else {
            Err(self.err(format!(
                "expected {want:?}, found {:?}",
                String::from_utf8_lossy(token)
            )))
        }
    }

    fn on_token(&mut self, token: Vec<u8>) -> Result<(), NarError> {
        let state = self.stack.pop().expect("checked non-empty");
        match state {
            State::Magic => self.expect(&token, "nix-archive-1")?,
            State::NodeOpen => {
                self.expect(&token, "(")?;
                self.stack.extend([State::TypeVal, State::TypeKw]);
            }
            State::EntryOpen => self.expect(&token, "(")?,
            State::NodeClose | State::EntryClose => self.expect(&token, ")")?,
            State::TypeKw => self.expect(&token, "type")?,
            State::ExecEmpty => self.expect(&token, "")?,
            State::ContentsKw => {
                self.expect(&token, "contents")?;
                self.stack.push(State::Contents);
            }
            State::TargetKw => self.expect(&token, "target")?,
            State::EntryNameKw => self.expect(&token, "name")?,
            State::EntryNodeKw => self.expect(&token, "node")?,
            State::Contents => unreachable!("contents are lexed as a blob"),
            State::TypeVal => match token.as_slice() {
                b"regular" => self.stack.extend([State::NodeClose, State::RegularAttr]),
                b"symlink" => self
                    .stack
                    .extend([State::NodeClose, State::Target, State::TargetKw]),
                b"directory" => self.stack.push(State::DirEntry { last: None }),
                other => {
                    return Err(self.err(format!(
                        "unknown node type {:?}",
                        String::from_utf8_lossy(other)
                    )))
                }
            },
            State::RegularAttr => match token.as_slice() {
                b"executable" => self.stack.extend([State::ContentsKw, State::ExecEmpty]),
                b"contents" => self.stack.push(State::Contents),
                _ => return Err(self.err("expected \"executable\" or \"contents\"")),
            },
            State::Target => {
                if token.is_empty() || token.contains(&0) {
                    return Err(self.err("empty symlink target or NUL in it"));
                }
            }
            State::DirEntry { last } => match token.as_slice() {
                b")" => {}
                b"entry" => {
                    self.stack.extend([
                        State::DirEntry { last },
                        State::EntryClose,
                        State::NodeOpen,
                        State::EntryNodeKw,
                        State::EntryName,
                        State::EntryNameKw,
                        State::EntryOpen,
                    ]);
                    if self.stack.len() > MAX_STACK {
                        return Err(self.err("directories nested too deeply"));
                    }
                }
                _ => return Err(self.err("expected \"entry\" or \")\" in a directory")),
            },
            State::EntryName => {
                if token.is_empty()
                    || token == b"."
                    || token == b".."
                    || token.contains(&b'/')
                    || token.contains(&0)
                {
                    return Err(self.err(format!(
                        "forbidden entry name {:?}",
                        String::from_utf8_lossy(&token)
                    )));
                }
                // After popping EntryName the enclosing DirEntry is 3 frames down.
                let offset = self.offset;
                let idx = self.stack.len() - 4;
                let State::DirEntry { last } = &mut self.stack[idx] else {
                    unreachable!("entry name outside a directory")
                };
                if let Some(prev) = last {
                    if token.as_slice() <= prev.as_slice() {
                        return Err(NarError::Malformed {
                            offset,
                            reason: format!(
                                "entry {:?} is not sorted after {:?} (or is a duplicate)",
                                String::from_utf8_lossy(&token),
                                String::from_utf8_lossy(prev)
                            ),
                        });
                    }
                }
                *last = Some(token);
            }
        }
        Ok(())
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Succeeds only if the NAR ended exactly after the root node.
    pub fn finish(&self) -> Result<(), NarError> {
        let at_token_boundary = matches!(self.lex, Lex::Len { have: 0, .. });
        if self.stack.is_empty() && at_token_boundary {
            Ok(())
        } else {
            Err(NarError::Truncated(self.offset))
        }
    }
}

/// Validates a whole NAR held in memory.
pub fn validate(nar: &[u8]) -> Result<(), NarError> {
    let mut v = NarValidator::new();
    v.feed(nar)?;
    v.finish()
}

/// A tree to serialise into a NAR (for tests and small fixtures).
#[derive(Debug, Clone)]
pub enum Node {
    Regular {
        executable: bool,
        contents: Vec<u8>,
    },
    Symlink {
        target: String,
    },
    /// Entries are sorted on serialisation.
    Directory(Vec<(String, Node)>),
}

/// Appends one NAR string: its length (u64, little-endian), its bytes and
/// zero padding to a multiple of 8.
pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s);
    out.resize(out.len() + padding(s.len() as u64), 0);
}

/// The zero bytes after a string of `len` bytes.
pub fn padding(len: u64) -> usize {
    ((8 - len % 8) % 8) as usize
}

fn write_node(out: &mut Vec<u8>, node: &Node) {
    write_str(out, b"(");
    write_str(out, b"type");
    match node {
        Node::Regular {
            executable,
            contents,
        } => {
            write_str(out, b"regular");
            if *executable {
                write_str(out, b"executable");
                write_str(out, b"");
            }
            write_str(out, b"contents");
            write_str(out, contents);
        }
        Node::Symlink { target } => {
            write_str(out, b"symlink");
            write_str(out, b"target");
            write_str(out, target.as_bytes());
        }
        Node::Directory(entries) => {
            write_str(out, b"directory");
            let mut sorted: Vec<_> = entries.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            for (name, child) in sorted {
                write_str(out, b"entry");
                write_str(out, b"(");
                write_str(out, b"name");
                write_str(out, name.as_bytes());
                write_str(out, b"node");
                write_node(out, child);
                write_str(out, b")");
            }
        }
    }
    write_str(out, b")");
}

/// Serialises `node` as a NAR, byte-for-byte as `nix-store --dump` would.
pub fn write(node: &Node) -> Vec<u8> {
    let mut out = Vec::new();
    write_str(&mut out, MAGIC);
    write_node(&mut out, node);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Node {
        Node::Directory(vec![
            (
                "bin".into(),
                Node::Directory(vec![(
                    "hello".into(),
                    Node::Regular {
                        executable: true,
                        contents: b"#!/bin/sh\necho hi\n".to_vec(),
                    },
                )]),
            ),
            (
                "lib".into(),
                Node::Symlink {
                    target: "../lib64".into(),
                },
            ),
            (
                "empty".into(),
                Node::Regular {
                    executable: false,
                    contents: vec![],
                },
            ),
        ])
    }

    #[test]
    fn accepts_what_it_writes_in_any_split() {
        let nar = write(&sample());
        validate(&nar).unwrap();
        for step in [1, 3, 7, 8, 13, 64] {
            let mut v = NarValidator::new();
            for piece in nar.chunks(step) {
                v.feed(piece).unwrap();
            }
            v.finish().unwrap();
            assert_eq!(v.offset(), nar.len() as u64);
        }
    }

    #[test]
    fn rejects_truncation_and_trailing_bytes() {
        let nar = write(&sample());
        for cut in [0, 8, 40, nar.len() - 8, nar.len() - 1] {
            assert!(validate(&nar[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = nar.clone();
        long.extend_from_slice(&[0; 8]);
        assert!(validate(&long).is_err());
    }

    #[test]
    fn rejects_traversal_names() {
        for name in ["..", ".", "a/b", ""] {
            let node = Node::Directory(vec![(
                name.to_string(),
                Node::Regular {
                    executable: false,
                    contents: vec![],
                },
            )]);
            let err = validate(&write(&node)).unwrap_err();
            assert!(
                err.to_string().contains("forbidden entry name"),
                "{name}: {err}"
            );
        }
    }

    #[test]
    fn rejects_unsorted_and_duplicate_entries() {
        let file = Node::Regular {
            executable: false,
            contents: vec![],
        };
        // Build by hand: `write` would sort them.
        let mut out = Vec::new();
        write_str(&mut out, MAGIC);
        write_str(&mut out, b"(");
        write_str(&mut out, b"type");
        write_str(&mut out, b"directory");
        for name in ["b", "a"] {
            for t in [&b"entry"[..], b"(", b"name", name.as_bytes(), b"node"] {
                write_str(&mut out, t);
            }
            write_node(&mut out, &file);
            write_str(&mut out, b")");
        }
        write_str(&mut out, b")");
        assert!(validate(&out)
            .unwrap_err()
            .to_string()
            .contains("not sorted"));
    }

    #[test]
    fn padding_error_names_the_same_byte_in_any_split() {
        // Found by fuzz/ (nar_validator): the offset was that of the piece
        // holding the bad padding byte (21 whole, 22 in pieces of 1, 7, 13).
        let mut nar = 13u64.to_le_bytes().to_vec();
        nar.extend_from_slice(b"nix-archive-1\0\x05\0");
        let want = Err(NarError::Malformed {
            offset: 22,
            reason: "non-zero padding".into(),
        });
        assert_eq!(validate(&nar), want);
        for sizes in [&[1, 7, 13][..], &[1], &[3], &[21, 1]] {
            let mut v = NarValidator::new();
            let (mut pos, mut got) = (0, Ok(()));
            for &size in sizes.iter().cycle() {
                let end = (pos + size).min(nar.len());
                got = v.feed(&nar[pos..end]);
                pos = end;
                if got.is_err() || pos == nar.len() {
                    break;
                }
            }
            assert_eq!(got, want, "pieces of {sizes:?}");
        }
    }

    #[test]
    fn rejects_bad_magic_padding_and_huge_tokens() {
        let mut nar = write(&sample());
        nar[8] = b'X';
        assert!(validate(&nar).is_err());

        let mut nar = write(&Node::Symlink {
            target: "abc".into(),
        });
        let last = nar.len() - 9; // inside the padding of "target"'s value
        nar[last] = 1;
        assert!(validate(&nar).is_err());

        let mut huge = Vec::new();
        write_str(&mut huge, MAGIC);
        huge.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(validate(&huge).unwrap_err().to_string().contains("token"));
    }
}
