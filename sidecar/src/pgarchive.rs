//! Just enough of pg_dump's custom archive format (`-Fc`, archive versions 1.12 to 1.16,
//! PostgreSQL 9.2 to 17) to follow a dump as it streams by: its table of contents, and
//! where each table's data block starts and ends.
//!
//! A dump written to a pipe, as Arca's are, has no data offsets in its TOC, so a parallel
//! `pg_restore` must scan the whole file for every block. While a restore stages the dump,
//! the [`Indexer`] sees every byte; each block's position is written into its TOC entry
//! as soon as the block is complete (the entry's offset field has a fixed size), which
//! lets `pg_restore` start on that table at once and seek straight to it. Anything
//! unexpected makes the indexer give up, and the restore falls back to waiting for the
//! whole file; the archive's bytes are never changed except in those offset fields.

/// `K_OFFSET_POS_NOT_SET`: the entry has data, position unknown (a dump to a pipe).
pub const OFFSET_NOT_SET: u8 = 1;
/// `K_OFFSET_POS_SET`.
pub const OFFSET_SET: u8 = 2;
/// `BLK_DATA`: a table's COPY data.
const BLK_DATA: u8 = 1;
/// `BLK_BLOBS`: large objects.
const BLK_BLOBS: u8 = 3;
/// The TOC is kept in memory until it is parsed; past this the indexer gives up.
const MAX_HEAD: usize = 32 << 20;

/// `teSection` of pg_backup.h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Belongs with what it follows (ACLs, comments, ...).
    None,
    /// Definitions before the data.
    PreData,
    /// Table data, large objects, sequence values.
    Data,
    /// Indexes, constraints, triggers.
    PostData,
}

/// One TOC entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `dumpId`, as `pg_restore -L` lists it.
    pub id: i32,
    /// `TABLE DATA`, `INDEX`, ...
    pub desc: String,
    /// Its section.
    pub section: Section,
    /// Offset flag as found (`OFFSET_NOT_SET` when it has data in a piped dump).
    pub data_state: u8,
    /// File position of the entry's offset flag byte.
    pub offset_field: u64,
    /// The data position recorded there (meaningful when `data_state` is `OFFSET_SET`).
    pub data_pos: u64,
}

/// The parsed table of contents.
#[derive(Debug, Clone)]
pub struct Toc {
    /// Entries in archive order.
    pub entries: Vec<Entry>,
    /// Bytes per offset (`offSize`).
    pub off_size: u8,
    /// Where the data blocks begin.
    pub data_start: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    int_size: usize,
}

/// The buffer ends before the structure does.
struct Short;

impl Cursor<'_> {
    fn byte(&mut self) -> Result<u8, Short> {
        let b = *self.buf.get(self.pos).ok_or(Short)?;
        self.pos += 1;
        Ok(b)
    }

    fn int(&mut self) -> Result<i64, Short> {
        let sign = self.byte()?;
        let mut v: i64 = 0;
        for i in 0..self.int_size {
            v |= i64::from(self.byte()?) << (8 * i);
        }
        Ok(if sign != 0 { -v } else { v })
    }

    /// A string; `None` for SQL NULL (length -1).
    fn string(&mut self) -> Result<Option<Vec<u8>>, Short> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        let end = self.pos.checked_add(len).ok_or(Short)?;
        let s = self.buf.get(self.pos..end).ok_or(Short)?.to_vec();
        self.pos = end;
        Ok(Some(s))
    }

    fn skip_string(&mut self) -> Result<(), Short> {
        self.string().map(|_| ())
    }
}

/// Why a head cannot be parsed (beyond "not enough bytes yet").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

const fn version(maj: u32, min: u32) -> u32 {
    (maj * 256 + min) * 256
}

/// Parse the header and TOC at the start of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_toc(buf: &[u8]) -> Result<Option<Toc>, Unsupported> {
    let mut c = Cursor {
        buf,
        pos: 0,
        int_size: 4,
    };
    match parse(&mut c) {
        Ok(t) => t.map(Some),
        Err(Short) => Ok(None),
    }
}

fn parse(c: &mut Cursor<'_>) -> Result<Result<Toc, Unsupported>, Short> {
    let bad = |m: &str| Ok(Err(Unsupported(m.to_string())));
    for &m in b"PGDMP" {
        if c.byte()? != m {
            return bad("not a pg_dump custom archive");
        }
    }
    let (maj, min, rev) = (c.byte()?, c.byte()?, c.byte()?);
    let v = version(u32::from(maj), u32::from(min)) + u32::from(rev);
    if v < version(1, 12) || v > version(1, 16) + 255 {
        return bad(&format!("archive version {maj}.{min}.{rev}"));
    }
    let int_size = c.byte()?;
    let off_size = c.byte()?;
    if !(1..=8).contains(&int_size) || !(1..=8).contains(&off_size) {
        return bad("odd integer sizes");
    }
    c.int_size = usize::from(int_size);
    let format = c.byte()?;
    if format != 1 {
        return bad("not the custom format");
    }
    if v >= version(1, 15) {
        c.byte()?; // compression algorithm
    } else {
        c.int()?; // compression level
    }
    for _ in 0..7 {
        c.int()?; // creation time
    }
    c.skip_string()?; // database name
    c.skip_string()?; // server version
    c.skip_string()?; // pg_dump version
    let count = c.int()?;
    if !(0..=10_000_000).contains(&count) {
        return bad("implausible TOC size");
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let id = c.int()?;
        c.int()?; // hadDumper
        c.skip_string()?; // tableoid
        c.skip_string()?; // oid
        c.skip_string()?; // tag
        let desc = c.string()?.unwrap_or_default();
        let section = match c.int()? {
            1 => Section::None,
            2 => Section::PreData,
            3 => Section::Data,
            4 => Section::PostData,
            _ => return bad("unknown section"),
        };
        c.skip_string()?; // defn
        c.skip_string()?; // dropStmt
        c.skip_string()?; // copyStmt
        c.skip_string()?; // namespace
        c.skip_string()?; // tablespace
        if v >= version(1, 14) {
            c.skip_string()?; // tableam
        }
        if v >= version(1, 16) {
            c.int()?; // relkind
        }
        c.skip_string()?; // owner
        c.skip_string()?; // "false" (WITH OIDS)
        while c.string()?.is_some() {} // dependencies, up to a NULL
        let offset_field = c.pos as u64;
        let data_state = c.byte()?;
        let mut data_pos: u64 = 0;
        for i in 0..off_size {
            data_pos |= u64::from(c.byte()?) << (8 * u32::from(i));
        }
        if !(1..=3).contains(&data_state) || id <= 0 || id > i64::from(i32::MAX) {
            return bad("malformed TOC entry");
        }
        entries.push(Entry {
            id: id as i32,
            desc: String::from_utf8_lossy(&desc).into_owned(),
            section,
            data_state,
            offset_field,
            data_pos,
        });
    }
    Ok(Ok(Toc {
        entries,
        off_size,
        data_start: c.pos as u64,
    }))
}

/// What the block walker expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A block type byte (or the end of the archive).
    BlockType,
    /// The block's dump id.
    BlockId,
    /// A data chunk length (0 ends the table, or the large object in a BLOBS block).
    ChunkLen,
    /// Payload bytes to skip.
    Skip(u64),
    /// A large object's oid (0 ends the BLOBS block).
    LoOid,
}

/// A completed data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Dump id of its TOC entry.
    pub id: i32,
    /// Position of its block type byte.
    pub start: u64,
}

/// Follows an archive as its bytes go by (see the module doc).
pub struct Indexer {
    pos: u64,
    head: Vec<u8>,
    toc: Option<Toc>,
    /// Entry index by dump id.
    by_id: std::collections::HashMap<i32, usize>,
    int_size: usize,
    failed: Option<String>,
    want: Want,
    field: Vec<u8>,
    in_blobs: bool,
    block: Block,
}

impl Default for Indexer {
    fn default() -> Self {
        Self::new()
    }
}

impl Indexer {
    /// A new indexer, before the first byte.
    pub fn new() -> Self {
        Self {
            pos: 0,
            head: Vec::new(),
            toc: None,
            by_id: std::collections::HashMap::new(),
            int_size: 4,
            failed: None,
            want: Want::BlockType,
            field: Vec::new(),
            in_blobs: false,
            block: Block { id: 0, start: 0 },
        }
    }

    /// The TOC, once parsed.
    pub fn toc(&self) -> Option<&Toc> {
        self.toc.as_ref()
    }

    /// Why the indexer gave up, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    fn give_up(&mut self, why: String) {
        self.failed = Some(why);
        self.head = Vec::new();
    }

    /// Where and what to write into the archive so that `b`'s TOC entry records its
    /// position: `None` unless the entry says "position unknown" (a dump to a pipe).
    pub fn patch(&self, b: Block) -> Option<(u64, Vec<u8>)> {
        let toc = self.toc.as_ref()?;
        let e = toc.entries.get(*self.by_id.get(&b.id)?)?;
        (e.data_state == OFFSET_NOT_SET)
            .then(|| (e.offset_field, offset_bytes(b.start, toc.off_size)))
    }

    /// Feed the next bytes; returns the blocks completed by them.
    pub fn feed(&mut self, data: &[u8]) -> Vec<Block> {
        let done = Vec::new();
        if self.failed.is_some() {
            return done;
        }
        if self.toc.is_none() {
            self.head.extend_from_slice(data);
            self.pos += data.len() as u64;
            match parse_toc(&self.head) {
                Ok(None) if self.head.len() > MAX_HEAD => {
                    self.give_up("table of contents larger than 32 MiB".into());
                    return done;
                }
                Ok(None) => return done,
                Err(Unsupported(why)) => {
                    self.give_up(why);
                    return done;
                }
                Ok(Some(toc)) => {
                    self.int_size = usize::from(self.head[8]);
                    let start = toc.data_start as usize;
                    let tail = self.head[start..].to_vec();
                    self.head = Vec::new();
                    self.pos = toc.data_start;
                    self.by_id = toc
                        .entries
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.id, i))
                        .collect();
                    self.toc = Some(toc);
                    return self.walk(&tail);
                }
            }
        }
        self.walk(data)
    }

    fn walk(&mut self, mut data: &[u8]) -> Vec<Block> {
        let mut done = Vec::new();
        let int_len = 1 + self.int_size;
        while !data.is_empty() && self.failed.is_none() {
            match self.want {
                Want::Skip(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.pos += k;
                    self.want = if n == k {
                        Want::ChunkLen
                    } else {
                        Want::Skip(n - k)
                    };
                }
                Want::BlockType => {
                    let t = data[0];
                    if t != BLK_DATA && t != BLK_BLOBS {
                        self.give_up(format!("unexpected block type {t}"));
                        break;
                    }
                    self.block = Block {
                        id: 0,
                        start: self.pos,
                    };
                    self.in_blobs = t == BLK_BLOBS;
                    data = &data[1..];
                    self.pos += 1;
                    self.want = Want::BlockId;
                }
                Want::BlockId | Want::ChunkLen | Want::LoOid => {
                    let k = (int_len - self.field.len()).min(data.len());
                    self.field.extend_from_slice(&data[..k]);
                    data = &data[k..];
                    self.pos += k as u64;
                    if self.field.len() < int_len {
                        continue;
                    }
                    let mut v: i64 = 0;
                    for (i, b) in self.field[1..].iter().enumerate() {
                        v |= i64::from(*b) << (8 * i);
                    }
                    if self.field[0] != 0 {
                        v = -v;
                    }
                    self.field.clear();
                    self.want = match self.want {
                        Want::BlockId => {
                            let known =
                                i32::try_from(v).is_ok_and(|id| self.by_id.contains_key(&id));
                            if !known {
                                self.give_up(format!("block for unknown entry {v}"));
                                break;
                            }
                            self.block.id = v as i32;
                            if self.in_blobs {
                                Want::LoOid
                            } else {
                                Want::ChunkLen
                            }
                        }
                        Want::LoOid if v == 0 => {
                            done.push(self.block);
                            Want::BlockType
                        }
                        Want::LoOid => Want::ChunkLen,
                        _ if v < 0 => {
                            self.give_up("negative chunk length".into());
                            break;
                        }
                        _ if v == 0 && self.in_blobs => Want::LoOid,
                        _ if v == 0 => {
                            done.push(self.block);
                            Want::BlockType
                        }
                        _ => Want::Skip(v as u64),
                    };
                }
            }
        }
        done
    }

    /// True when the archive ended where a block may end (not inside one).
    pub fn complete(&self) -> bool {
        self.failed.is_none() && self.toc.is_some() && self.want == Want::BlockType
    }
}

/// The bytes that mark `start` as an entry's data position (flag and offset).
pub fn offset_bytes(start: u64, off_size: u8) -> Vec<u8> {
    let mut out = vec![OFFSET_SET];
    out.extend((0..off_size).map(|i| (start >> (8 * u32::from(i))) as u8));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(v: i64) -> Vec<u8> {
        let mut out = vec![u8::from(v < 0)];
        out.extend_from_slice(&(v.unsigned_abs() as u32).to_le_bytes());
        out
    }

    fn string(s: Option<&str>) -> Vec<u8> {
        match s {
            None => int(-1),
            Some(s) => {
                let mut out = int(s.len() as i64);
                out.extend_from_slice(s.as_bytes());
                out
            }
        }
    }

    /// A small version 1.14 archive with two tables' data and one index.
    fn archive() -> (Vec<u8>, Vec<u64>) {
        let mut a = b"PGDMP".to_vec();
        a.extend([1, 14, 0, 4, 8, 1]);
        a.extend(int(0));
        for _ in 0..7 {
            a.extend(int(1));
        }
        for s in ["db", "15.1", "15.1"] {
            a.extend(string(Some(s)));
        }
        a.extend(int(3));
        let mut fields = Vec::new();
        for (id, desc, section, state) in [
            (5, "TABLE DATA", 3, OFFSET_NOT_SET),
            (6, "TABLE DATA", 3, OFFSET_NOT_SET),
            (7, "INDEX", 4, 3u8),
        ] {
            a.extend(int(id));
            a.extend(int(1));
            for s in ["0", "0", "t"] {
                a.extend(string(Some(s)));
            }
            a.extend(string(Some(desc)));
            a.extend(int(section));
            for s in ["", "", "", "public", "", "heap", "me", "false"] {
                a.extend(string(Some(s)));
            }
            a.extend(string(Some("2")));
            a.extend(string(None));
            fields.push(a.len() as u64);
            a.push(state);
            a.extend([0u8; 8]);
        }
        let mut starts = Vec::new();
        for (id, rows) in [(5, vec!["a\n", "bb\n"]), (6, vec![])] {
            starts.push(a.len() as u64);
            a.push(BLK_DATA);
            a.extend(int(id));
            for r in rows {
                a.extend(int(r.len() as i64));
                a.extend_from_slice(r.as_bytes());
            }
            a.extend(int(0));
        }
        starts.extend(fields);
        (a, starts)
    }

    #[test]
    fn follows_blocks_fed_in_any_pieces() {
        let (a, starts) = archive();
        for piece in [1, 3, 7, 1000] {
            let mut ix = Indexer::new();
            let mut blocks = Vec::new();
            for c in a.chunks(piece) {
                blocks.extend(ix.feed(c));
            }
            assert!(ix.complete(), "piece {piece}: {:?}", ix.failed());
            assert_eq!(
                blocks,
                vec![
                    Block {
                        id: 5,
                        start: starts[0]
                    },
                    Block {
                        id: 6,
                        start: starts[1]
                    }
                ],
                "piece {piece}"
            );
            let toc = ix.toc().expect("toc");
            let fields: Vec<u64> = toc.entries.iter().map(|e| e.offset_field).collect();
            assert_eq!(fields, starts[2..].to_vec());
            assert_eq!(toc.entries[2].section, Section::PostData);
            assert_eq!(toc.data_start, starts[0]);
        }
    }

    #[test]
    fn gives_up_on_what_it_does_not_know() {
        let (mut a, starts) = archive();
        let mut ix = Indexer::new();
        ix.feed(b"not a dump at all");
        assert!(ix.failed().is_some());
        // A block for an entry the TOC does not have.
        a[starts[0] as usize + 2] = 99;
        let mut ix = Indexer::new();
        ix.feed(&a);
        assert!(ix.failed().unwrap_or_default().contains("unknown entry"));
        assert!(!ix.complete());
    }

    #[test]
    fn offsets_are_little_endian_after_the_flag() {
        assert_eq!(
            offset_bytes(0x0102_0304, 8),
            vec![2, 4, 3, 2, 1, 0, 0, 0, 0]
        );
    }
}
