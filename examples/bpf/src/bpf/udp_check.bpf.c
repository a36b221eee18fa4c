/*
 * Socket filter that drops UDP datagrams whose checksum is wrong and keeps
 * everything else, written twice: the checksum loops over a payload whose
 * length only the packet knows, and how a BPF program may loop depends on the
 * kernel.
 *
 * - check_iter: the open-coded numeric iterator (bpf_for, from
 *   <bpf/bpf_helpers.h>), kfuncs that Linux 6.4 added. Older verifiers
 *   reject the program.
 * - check_loop: the bpf_loop() helper (Linux 5.17), a callback per word.
 *
 * User space loads the one that the running kernel supports (src/probe.rs).
 */

/*
 * <linux/bpf.h> defines struct bpf_iter_num from Linux 6.4 on; older headers
 * (Debian 12 ships 6.1's) do not. Move the header's definition, if any, out of
 * the way and define the struct below, so the program builds with both.
 */
#define bpf_iter_num bpf_iter_num___uapi
#include <linux/bpf.h>
#undef bpf_iter_num
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <stdbool.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct bpf_iter_num {
	__u64 __opaque[1];
} __attribute__((aligned(8)));

/*
 * The folded ones' complement sum over pseudo-header and datagram computed by
 * the last run (0xffff when the checksum is right), or 0 if it computed none.
 * User space reads it back through the skeleton.
 */
__u16 last_sum;

enum parsed {
	NOT_CHECKSUMMED, /* not UDP over IPv4, or a datagram sent without checksum */
	MALFORMED,
	CHECKSUMMED,
};

struct datagram {
	__u32 offset; /* of the UDP header: a socket filter's skb starts at the IP header */
	__u32 len;    /* UDP header and payload, as the UDP header says */
	__u32 sum;    /* running sum, not yet folded */
};

/* Finds the UDP datagram and starts its sum with the IPv4 pseudo-header. */
static __always_inline enum parsed parse(struct __sk_buff *skb, struct datagram *dgram)
{
	struct iphdr ip;
	struct udphdr udp;
	__u32 saddr, daddr;

	last_sum = 0;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return NOT_CHECKSUMMED;
	if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) || ip.version != 4 || ip.ihl < 5)
		return MALFORMED;
	if (ip.protocol != IPPROTO_UDP)
		return NOT_CHECKSUMMED;
	dgram->offset = ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, dgram->offset, &udp, sizeof(udp)))
		return MALFORMED;
	dgram->len = bpf_ntohs(udp.len);
	if (dgram->len < sizeof(udp) || dgram->offset + dgram->len > skb->len)
		return MALFORMED;
	if (udp.check == 0)
		return NOT_CHECKSUMMED;

	saddr = bpf_ntohl(ip.saddr);
	daddr = bpf_ntohl(ip.daddr);
	dgram->sum = (saddr >> 16) + (saddr & 0xffff) + (daddr >> 16) + (daddr & 0xffff) +
		     IPPROTO_UDP + dgram->len;
	return CHECKSUMMED;
}

/* Adds the big-endian 16-bit word at `offset`; false if the skb is too short. */
static __always_inline bool add_word(struct __sk_buff *skb, __u32 offset, __u32 *sum)
{
	__u16 word;

	if (bpf_skb_load_bytes(skb, offset, &word, sizeof(word)))
		return false;
	*sum += bpf_ntohs(word);
	return true;
}

/* Adds the odd last byte, if any, folds the sum and decides. */
static __always_inline int verdict(struct __sk_buff *skb, struct datagram *dgram)
{
	__u8 last;

	if (dgram->len & 1) {
		if (bpf_skb_load_bytes(skb, dgram->offset + dgram->len - 1, &last, 1))
			return 0;
		dgram->sum += last << 8; /* padded with a zero byte */
	}
	/* Two folds bring any 32-bit sum down to 16 bits. */
	dgram->sum = (dgram->sum & 0xffff) + (dgram->sum >> 16);
	dgram->sum = (dgram->sum & 0xffff) + (dgram->sum >> 16);
	last_sum = dgram->sum;
	/* A socket filter returns how many bytes to keep: all, or none. */
	return last_sum == 0xffff ? skb->len : 0;
}

SEC("socket")
int check_iter(struct __sk_buff *skb)
{
	struct datagram dgram;
	int i;

	switch (parse(skb, &dgram)) {
	case NOT_CHECKSUMMED:
		return skb->len;
	case MALFORMED:
		return 0;
	case CHECKSUMMED:
		break;
	}
	bpf_for(i, 0, dgram.len / 2) {
		if (!add_word(skb, dgram.offset + i * 2, &dgram.sum))
			return 0;
	}
	return verdict(skb, &dgram);
}

struct loop_ctx {
	struct __sk_buff *skb;
	struct datagram dgram;
	bool truncated;
};

static long add_nth_word(__u32 index, void *data)
{
	struct loop_ctx *ctx = data;

	if (add_word(ctx->skb, ctx->dgram.offset + index * 2, &ctx->dgram.sum))
		return 0; /* next word */
	ctx->truncated = true;
	return 1; /* stop */
}

SEC("socket")
int check_loop(struct __sk_buff *skb)
{
	struct loop_ctx ctx = { .skb = skb };

	switch (parse(skb, &ctx.dgram)) {
	case NOT_CHECKSUMMED:
		return skb->len;
	case MALFORMED:
		return 0;
	case CHECKSUMMED:
		break;
	}
	bpf_loop(ctx.dgram.len / 2, add_nth_word, &ctx, 0);
	if (ctx.truncated)
		return 0;
	return verdict(skb, &ctx.dgram);
}

/* The kernel lets only programs under a GPL-compatible license call kfuncs. */
char LICENSE[] SEC("license") = "Dual MIT/GPL";
