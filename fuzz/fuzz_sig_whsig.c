/* fuzz_sig_whsig.c: target the Standard Webhooks / Svix parsers: "v1,<b64> v1,<b64>"
 * signatures plus the id and timestamp headers. Input: signature value, 0x00, id, 0x00,
 * timestamp, 0x00, body (missing parts take fixed values). */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct signer std, svix;
    static bool init;
    if (!init) {
        fuzz_signer(&std, "standard", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        fuzz_signer(&svix, "svix", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        init = true;
    }
    struct slice sig, rest, id, rest2, ts, body;
    fuzz_split(data, size, &sig, &rest);
    if (rest.p >= data && rest.p <= data + size) {
        fuzz_split(rest.p, rest.len, &id, &rest2);
    } else {
        id = SLICE_LIT("msg_1");
        rest2 = rest;
    }
    if (rest2.p >= data && rest2.p <= data + size) {
        fuzz_split(rest2.p, rest2.len, &ts, &body);
    } else {
        ts = SLICE_LIT("1700000000");
        body = rest2;
    }
    struct header h[3] = {{SLICE_LIT("webhook-id"), id},
                          {SLICE_LIT("webhook-timestamp"), ts},
                          {SLICE_LIT("webhook-signature"), sig}};
    fuzz_verify(&std, h, 3, body);
    h[0].name = SLICE_LIT("svix-id");
    h[1].name = SLICE_LIT("svix-timestamp");
    h[2].name = SLICE_LIT("svix-signature");
    fuzz_verify(&svix, h, 3, body);
    return 0;
}
