//! The content purge's diff (SPEC §9), measured on the site: 20,000
//! files in a site layer over a shared 40 MB base layer, rebuilt with 12
//! files changed (`make bench-content`). Both site layers are gzip, as
//! registries serve them; the base layer is built too, and the diff never
//! reads it (the shared prefix of the two layer lists).
//!
//! Prints what was read (the compressed bytes of the layers the diff
//! reads: what the program downloads), the time of reading and comparing,
//! the peak heap (a counting allocator, the layers' bytes included) and the
//! URLs found. Asserts nothing. FILES=20000 CHANGED=12 by default.

use cache_buster_purge::content::ContentRoot;
use cache_buster_purge::image_diff::{Overlay, compare, shared_layers};
use cache_buster_purge::layers::{Compression, read_layer};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(by: usize) {
    let now = IN_USE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is forwarded to the system allocator unchanged; only
// the counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size());
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size);
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const HTML: &str = "usr/share/nginx/html";

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// Text that compresses as a page does, different for each seed.
fn page(seed: usize, size: usize) -> Vec<u8> {
    let words = [
        "static", "site", "hugo", "post", "cache", "purge", "nginx", "image",
    ];
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut text = format!("<html><body><h1>page {seed}</h1><p>").into_bytes();
    while text.len() < size {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
        let word = words
            .get((state >> 33) % words.len())
            .copied()
            .unwrap_or("x");
        text.extend_from_slice(word.as_bytes());
        text.push(b' ');
    }
    text
}

/// A gzip layer of (path, content) files.
fn layer(files: impl Iterator<Item = (String, Vec<u8>)>) -> Vec<u8> {
    let gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut builder = tar::Builder::new(gzip);
    for (path, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_mode(0o644);
        header.set_size(content.len() as u64);
        builder
            .append_data(&mut header, path, &content[..])
            .expect("in memory");
    }
    let mut gzip = builder.into_inner().expect("in memory");
    gzip.flush().expect("in memory");
    gzip.finish().expect("in memory")
}

fn main() {
    let files = setting("FILES", 20_000);
    let changed = setting("CHANGED", 12).min(files);
    // The base: 40 MB of incompressible library files, outside the site.
    let base = layer((0..40).map(|i| {
        let mut state = i as u64 + 1;
        let bytes = (0..1_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes().first().copied().unwrap_or(0)
            })
            .collect();
        (format!("usr/lib/lib{i}.so"), bytes)
    }));
    let site = |version: usize| {
        layer((0..files).map(move |i| {
            let seed = if i < changed { i + version * files } else { i };
            let path = match i {
                0 => format!("{HTML}/index.html"),
                i => format!("{HTML}/posts/{i}/index.html"),
            };
            (path, page(seed, 1200 + (i % 7) * 300))
        }))
    };
    let (old_site, new_site) = (site(1), site(2));
    let old_layers = [("base", &base), ("site-1", &old_site)];
    let new_layers = [("base", &base), ("site-2", &new_site)];
    let shared = shared_layers(
        &old_layers.map(|(name, _)| name),
        &new_layers.map(|(name, _)| name),
    );

    let root = ContentRoot::parse("/usr/share/nginx/html=https://www.example.com/").expect("valid");
    let wanted = |path: &str| path.starts_with(HTML) || HTML.starts_with(path);
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    let mut read = 0;
    let mut overlay = |layers: &[(&str, &Vec<u8>)]| {
        let mut overlay = Overlay::default();
        for (_, blob) in layers.iter().skip(shared) {
            read += blob.len();
            overlay.apply(read_layer(&blob[..], Compression::Gzip, &wanted).expect("a layer"));
        }
        overlay
    };
    let (old, new) = (overlay(&old_layers), overlay(&new_layers));
    let changes = compare(&old, &new);
    let urls: Vec<String> = changes
        .added
        .iter()
        .chain(&changes.changed)
        .chain(&changes.removed)
        .flat_map(|path| root.urls_of(path))
        .collect();
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    let mib = |bytes: usize| bytes as f64 / 1024.0 / 1024.0;
    println!(
        "content diff: {files} files, {changed} changed, base layer {:.1} MiB (shared, not read)",
        mib(base.len())
    );
    println!(
        "  site layers read:  {:.1} MiB (gzip: {:.1} + {:.1})",
        mib(read),
        mib(old_site.len()),
        mib(new_site.len())
    );
    println!(
        "  time:              {:.2} s (read both site layers, compare, URLs)",
        elapsed.as_secs_f64()
    );
    println!(
        "  peak heap:         {:.1} MiB above the layers' bytes held by the bench",
        mib(peak)
    );
    println!(
        "  found:             {} added, {} changed, {} removed -> {} URLs",
        changes.added.len(),
        changes.changed.len(),
        changes.removed.len(),
        urls.len()
    );
}
