// Process-wide malloc settings for the node daemon and the coordinator's processes.
//
// A model round builds and frees vectors of a few MB per query (Cox risk-set sums, masked
// words, Cap'n Proto messages). With glibc's defaults such a block is mmap'd and unmapped on
// every query, or a worker thread's arena hands its free top back with MADV_DONTNEED, so the
// next round faults every page in again and zeroes it: about 10 % of a site's CPU in a 10-site
// Cox fit, in `perf` profiles. Keeping freed memory for reuse removes that churn; the price is
// that a process keeps its peak working set (up to the trim threshold below) after a big query.
#pragma once

namespace trialmesh {

// Call once at the start of main(), before any thread starts. Blocks up to 32 MiB come from the
// heap rather than their own mappings, and up to 256 MiB of free memory at the top of an arena
// is kept rather than returned to the kernel.
void retainFreedMemoryForReuse();

}  // namespace trialmesh
