//! Sending a NAR in parts (`provenix_provenance::upload_parts`), for a
//! server behind a proxy that limits request bodies: parts no larger than
//! the server announced, two in flight while the next is read, each one
//! retried on its own when the connection, the proxy or the server fails
//! (the server says which parts it holds, so an interrupted upload resumes
//! from what was acknowledged rather than from the start).

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use futures::TryStreamExt;
use indicatif::ProgressBar;
use provenix_provenance::upload::{UploadOutcome, UploadPathNarInfo};
use provenix_provenance::upload_parts::PartLayout;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::api::{is_transient, ApiClient};

/// Parts sent at once: one streaming while the next is read from the store.
const PARTS_IN_FLIGHT: usize = 2;
/// Tries per request; the waits between them double from the first,
/// about a minute in all: a replica restarting, a proxy's upstream failing over.
const ATTEMPTS: u32 = 7;
const FIRST_WAIT: Duration = Duration::from_millis(500);

/// Uploads the NAR `reader` yields for `info` in parts; the outcome as a
/// single upload would answer it.
pub async fn send<R: AsyncRead + Unpin + Send>(
    api: &ApiClient,
    info: &UploadPathNarInfo,
    reader: R,
    bar: &ProgressBar,
) -> Result<UploadOutcome> {
    let start = retrying("starting the upload", || api.start_upload_session(info)).await?;
    if let Some(outcome) = start.outcome {
        return Ok(outcome);
    }
    let session = start
        .session
        .context("the server answered neither an outcome nor an upload session")?;
    let layout = PartLayout::new(info.nar_size, session.part_size);
    if layout.count() != session.part_count {
        bail!(
            "the server's upload session has {} parts where {} were expected",
            session.part_count,
            layout.count()
        );
    }
    let id = session.id.as_str();
    let count = layout.count();
    // Parts are read in order (the stream is not polled again until a
    // slot is free), one buffer each.
    let parts = futures::stream::try_unfold((reader, 0), move |(mut reader, n)| async move {
        if n == count {
            let mut rest = [0u8; 1];
            if reader.read(&mut rest).await? != 0 {
                bail!(
                    "the NAR is longer than its recorded size {}",
                    layout.nar_size
                );
            }
            return Ok(None);
        }
        let mut buf = vec![0; layout.size_of(n)? as usize];
        reader
            .read_exact(&mut buf)
            .await
            .with_context(|| format!("reading part {n} of the NAR from the store"))?;
        Ok(Some(((n, Bytes::from(buf)), (reader, n + 1))))
    });
    let sent = parts
        .map_ok(|(n, bytes)| async move {
            let size = bytes.len() as u64;
            send_part(api, id, n, bytes).await?;
            bar.inc(size);
            Ok(())
        })
        .try_buffered(PARTS_IN_FLIGHT)
        .try_collect::<Vec<()>>()
        .await;
    if let Err(e) = sent {
        // Gives the parts back now; the server reclaims them at expiry anyway.
        let _ = api.cancel_upload(id).await;
        return Err(e);
    }
    let done = retrying("completing the upload", || api.complete_upload(id)).await?;
    Ok(done.outcome)
}

/// Sends part `n`, again while that may succeed; a part the server says it
/// holds after a failed answer (the acknowledgement was lost) is not sent again.
async fn send_part(api: &ApiClient, id: &str, n: u64, bytes: Bytes) -> Result<()> {
    let mut wait = FIRST_WAIT;
    for attempt in 1.. {
        let e = match api.upload_part(id, n, bytes.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if !is_transient(&e) || attempt == ATTEMPTS {
            return Err(e.context(format!("sending part {n}")));
        }
        eprintln!("Part {n}: {e:#}; trying again in {wait:?}.");
        tokio::time::sleep(wait).await;
        wait *= 2;
        if let Ok(s) = api.upload_session(id).await {
            if s.received.contains(&n) {
                eprintln!(
                    "Resumed the upload: the server holds part {n} of {}.",
                    s.part_count
                );
                return Ok(());
            }
            eprintln!(
                "Resuming the upload at part {n}: the server holds {} of {} parts.",
                s.received.len(),
                s.part_count
            );
        }
    }
    unreachable!("the loop returns")
}

async fn retrying<T, F, Fut>(what: &str, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut wait = FIRST_WAIT;
    for attempt in 1.. {
        match call().await {
            Ok(t) => return Ok(t),
            Err(e) if is_transient(&e) && attempt < ATTEMPTS => {
                eprintln!("{what}: {e:#}; trying again in {wait:?}.");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e.context(what.to_string())),
        }
    }
    unreachable!("the loop returns")
}
