/* fuzz_humanos.c: target the humanos verifier: the x-signature / x-timestamp headers and, when
 * the signature is valid, the {"iv","data","tag"} body decoder and AES-GCM open. The fuzzer
 * controls the timestamp and the body; the signature is recomputed so decryption is reached.
 * Input: timestamp, 0x00, body. */
#include <stdio.h>

#include "codec.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct signer s;
    static bool init;
    if (!init) {
        fuzz_signer(&s, "humanos", "sig-secret");
        init = true;
    }
    struct slice ts, body;
    fuzz_split(data, size, &ts, &body);
    static const uint8_t dot = '.';
    struct slice pieces[3] = {ts, {&dot, 1}, body};
    uint8_t mac[32];
    hmac_sha256(&s.keys[0], pieces, 3, mac);
    char hex[64];
    hex_encode(hex, mac, 32);
    struct header h[2] = {{SLICE_LIT("x-signature"), slice_of(hex, 64)},
                          {SLICE_LIT("x-timestamp"), ts}};
    fuzz_verify(&s, h, 2, body);
    /* and with the fuzzer's bytes as the signature itself */
    h[0].value = ts;
    fuzz_verify(&s, h, 2, body);
    return 0;
}
