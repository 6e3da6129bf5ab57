/*
 * A deliberate bug: one string from llmr is never given back to llmr_string_free.
 *
 * tests/c_harness.rs builds this with AddressSanitizer and runs it under valgrind, and expects
 * both to report the leak. It proves that the sanitizer and valgrind runs of the harness see
 * memory the Rust library allocates on behalf of C: a clean harness run means something.
 */

#include <stdio.h>
#include <string.h>

#include "llmr.h"

int main(void) {
    if (llmr_init("{\"global_llm_configs\": [{\"provider\": \"MOCK\", \"model_name\": \"m\"}]}",
                  NULL) != LLMR_OK) {
        fprintf(stderr, "leak canary: llmr_init failed\n");
        return 2;
    }
    char *response = NULL;
    llmr_status status =
        llmr_complete("{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &response);
    if (status != LLMR_OK || response == NULL) {
        fprintf(stderr, "leak canary: llmr_complete failed: %s\n", llmr_status_name(status));
        return 2;
    }
    printf("leak canary: leaking a %zu-byte response\n", strlen(response) + 1);
    response = NULL; /* the leak */
    llmr_shutdown();
    return 0;
}
