#include "common/allocator.h"

#include <malloc.h>

namespace trialmesh {

void retainFreedMemoryForReuse() {
  // Setting either value turns off glibc's dynamic threshold, which only rises after a large
  // block has been unmapped once and never covers the worker threads' arenas' trimming.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
}

}  // namespace trialmesh
