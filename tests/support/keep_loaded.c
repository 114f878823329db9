/*
 * Sanitizer builds only: dlclose() does nothing, so a library loaded at run time stays mapped
 * until the process exits.
 *
 * Open MPI loads its components with dlopen and unloads them in MPI_Finalize. The allocations
 * they make are still live at exit, and LeakSanitizer matches each such stack against
 * tests/lsan.supp by the module of its frames; a frame in an unloaded component belongs to no
 * known module, and the symbolizer re-reads /proc/self/maps for every one of them: about 6 s
 * per process here, most of the sanitizer suite's time. With the components still mapped the
 * frames resolve at once (and reports name them). Leak detection is unchanged:
 * unit_lsan_canary checks that a leak of ours is still reported.
 */
#include <dlfcn.h>
#include <stdlib.h>

int dlclose(void *handle)
{
	(void)handle;
	return 0;
}

/*
 * And hwloc's OpenCL plugin stays unloaded (unless the environment says otherwise): at MPI_Init it
 * loads libOpenCL.so.1, whose dynamic TLS block the LeakSanitizer of GCC 12 and clang 14 can
 * misread and crash on at exit (README, "Tests"). Set before main, so before MPI_Init.
 */
__attribute__((constructor)) static void keep_opencl_out(void)
{
	setenv("HWLOC_PLUGINS_BLACKLIST", "hwloc_opencl", 0);
}
