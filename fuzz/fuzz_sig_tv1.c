/* fuzz_sig_tv1.c: target the "t=<unix>,v1=<hex>[,v1=…]" parsers (humiris, stripe) via
 * verify_request(). Input: header value, 0x00, body. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct signer hu, st;
    static bool init;
    if (!init) {
        fuzz_signer(&hu, "humiris", "whsec_k9m2");
        fuzz_signer(&st, "stripe", "whsec_stripe");
        init = true;
    }
    struct slice v, body;
    fuzz_split(data, size, &v, &body);
    struct header h[1] = {{SLICE_LIT("X-Humiris-Signature"), v}};
    fuzz_verify(&hu, h, 1, body);
    h[0].name = SLICE_LIT("Stripe-Signature");
    fuzz_verify(&st, h, 1, body);
    return 0;
}
