/* The embedded default policy: policy/default.json, byte for byte, NUL-terminated. */
	.section .rodata
	.globl lg_policy_default_json
	.hidden lg_policy_default_json
	.type lg_policy_default_json, @object
lg_policy_default_json:
	.incbin "policy/default.json"
	.byte 0
lg_policy_default_json_end:
	.size lg_policy_default_json, lg_policy_default_json_end - lg_policy_default_json
	.globl lg_policy_default_json_len
	.hidden lg_policy_default_json_len
	.type lg_policy_default_json_len, @object
	.balign 8
lg_policy_default_json_len:
	.quad lg_policy_default_json_end - lg_policy_default_json - 1
	.size lg_policy_default_json_len, 8
	.section .note.GNU-stack,"",@progbits
