/* fuzz_sig_hex.c: target the "sha256=<hex>" and bare "<hex>" signature-header parsers
 * (github, humanconnection, humcli, aksita) via verify_request(). Input: header value, 0x00,
 * body. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct signer gh, hc, cli, ak;
    static bool init;
    if (!init) {
        fuzz_signer(&gh, "github", "It's a Secret to Everybody");
        fuzz_signer(&hc, "humanconnection", "whsec_x");
        fuzz_signer(&cli, "humcli", "whsec_y");
        fuzz_signer(&ak, "aksita", "z");
        init = true;
    }
    struct slice v, body;
    fuzz_split(data, size, &v, &body);
    struct header h[2] = {{SLICE_LIT("X-Hub-Signature-256"), v},
                          {SLICE_LIT("X-GitHub-Delivery"), v}};
    fuzz_verify(&gh, h, 2, body);
    h[0].name = SLICE_LIT("X-HumanConnection-Signature");
    fuzz_verify(&hc, h, 1, body);
    h[0].name = SLICE_LIT("X-Signature");
    h[1] = (struct header){SLICE_LIT("X-Timestamp"), v};
    fuzz_verify(&cli, h, 2, body);
    h[0].name = SLICE_LIT("X-Webhook-Signature");
    fuzz_verify(&ak, h, 1, body);
    return 0;
}
