//! How a NAR's chunks are read back: chunks stored next to each other in
//! one pack (an upload packs its new chunks in NAR order) are read with one
//! ranged request, up to a size cap, instead of one request per chunk.

use crate::db::nars::ChunkLocation;

/// One ranged read of a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub pack_key: String,
    pub start: u64,
    pub end: u64,
}

/// Merges consecutive chunks that are contiguous in the same object into
/// reads of at most `max_len` bytes (a single larger chunk is read alone).
pub fn plan_reads(chunks: Vec<ChunkLocation>, max_len: u64) -> Vec<Read> {
    let mut reads: Vec<Read> = Vec::new();
    for c in chunks {
        let start = c.offset as u64;
        let end = start + c.file_size as u64;
        match reads.last_mut() {
            Some(r) if r.pack_key == c.pack_key && r.end == start && end - r.start <= max_len => {
                r.end = end;
            }
            _ => reads.push(Read {
                pack_key: c.pack_key,
                start,
                end,
            }),
        }
    }
    reads
}

/// Groups reads, in order, into batches of at most `max_bytes` (a larger
/// read alone): each batch is one trip to the blocking pool.
pub fn batch_reads(reads: Vec<Read>, max_bytes: u64) -> Vec<Vec<Read>> {
    let mut batches: Vec<(u64, Vec<Read>)> = Vec::new();
    for r in reads {
        let len = r.end - r.start;
        match batches.last_mut() {
            Some((total, batch)) if *total + len <= max_bytes => {
                *total += len;
                batch.push(r);
            }
            _ => batches.push((len, vec![r])),
        }
    }
    batches.into_iter().map(|(_, batch)| batch).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(key: &str, offset: i64, file_size: i64) -> ChunkLocation {
        ChunkLocation {
            pack_key: key.into(),
            offset,
            file_size,
        }
    }

    fn read(key: &str, start: u64, end: u64) -> Read {
        Read {
            pack_key: key.into(),
            start,
            end,
        }
    }

    #[test]
    fn contiguous_chunks_of_one_pack_are_one_read() {
        let plan = plan_reads(vec![at("p", 0, 10), at("p", 10, 5), at("p", 15, 1)], 100);
        assert_eq!(plan, vec![read("p", 0, 16)]);
    }

    #[test]
    fn gaps_other_objects_and_the_cap_start_new_reads() {
        let plan = plan_reads(
            vec![
                at("p", 0, 10),
                at("p", 20, 10), // a gap: a chunk another NAR owns
                at("q", 30, 10), // another object at an adjoining offset
                at("q", 40, 10),
                at("q", 50, 90), // would pass the cap
                at("p", 0, 10),  // a chunk repeated earlier in the NAR
            ],
            100,
        );
        assert_eq!(
            plan,
            vec![
                read("p", 0, 10),
                read("p", 20, 30),
                read("q", 30, 50),
                read("q", 50, 140),
                read("p", 0, 10),
            ]
        );
    }

    #[test]
    fn a_chunk_larger_than_the_cap_is_read_alone() {
        let plan = plan_reads(vec![at("p", 0, 500), at("p", 500, 10)], 100);
        assert_eq!(plan, vec![read("p", 0, 500), read("p", 500, 510)]);
    }

    #[test]
    fn batches_keep_order_and_stay_under_their_size() {
        let reads = vec![
            read("p", 0, 40),
            read("q", 0, 50),
            read("p", 40, 60), // 40 + 50 + 20 > 100: starts a batch
            read("r", 0, 150), // larger than a batch: alone
            read("p", 60, 70),
        ];
        let batches = batch_reads(reads.clone(), 100);
        assert_eq!(
            batches,
            vec![
                vec![read("p", 0, 40), read("q", 0, 50)],
                vec![read("p", 40, 60)],
                vec![read("r", 0, 150)],
                vec![read("p", 60, 70)],
            ]
        );
        assert_eq!(batches.concat(), reads);
        assert!(batch_reads(Vec::new(), 100).is_empty());
    }
}
