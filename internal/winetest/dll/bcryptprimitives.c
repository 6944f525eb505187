/*
 * bcryptprimitives.dll for Wine 8, which has none: Go (1.22 on) draws its
 * random numbers from ProcessPrng in this DLL and will not start without
 * it. Built by run.sh with MinGW into the test Wine prefix only; never
 * shipped. ProcessPrng fills the buffer from RtlGenRandom, which Wine has.
 */
#include <windows.h>
#include <ntsecapi.h>

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n))
            return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
