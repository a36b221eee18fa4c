/*
 * XDP program for UDP over IPv4 over Ethernet, by rule:
 * - anything else, or TCP, ICMP...: XDP_PASS;
 * - a frame too short for the headers it announces: XDP_DROP;
 * - a datagram: counted in packets_per_port under its destination port, then
 *   - to a port in blocked_ports: XDP_DROP;
 *   - to echo_port: sent back where it came from (addresses and ports swapped,
 *     TTL reset), XDP_TX;
 *   - else XDP_PASS.
 */

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define REPLY_TTL 64

/* Set by user space before loading; 0 echoes nothing. */
const volatile __u16 echo_port = 0;

/* Destination ports (host byte order) to drop, filled in by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u16);
	__type(value, __u8);
} blocked_ports SEC(".maps");

/* Datagrams seen per destination port (host byte order), read by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u64);
} packets_per_port SEC(".maps");

static __always_inline void count(__u16 port)
{
	const __u64 zero = 0;
	__u64 *packets = bpf_map_lookup_elem(&packets_per_port, &port);

	if (!packets) {
		/* First datagram to this port. BPF_NOEXIST: if another CPU inserted
		 * the entry meanwhile, keep its count. */
		bpf_map_update_elem(&packets_per_port, &port, &zero, BPF_NOEXIST);
		packets = bpf_map_lookup_elem(&packets_per_port, &port);
		if (!packets)
			return; /* the map is full */
	}
	__sync_fetch_and_add(packets, 1);
}

/* Folds a 32-bit ones' complement sum to 16 bits: twice is always enough. */
static __always_inline __u16 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

/*
 * Sets the TTL and updates the header checksum incrementally (RFC 1624,
 * HC' = ~(~HC + ~m + m')), m being the 16-bit word that holds TTL and protocol.
 */
static __always_inline void set_ttl(struct iphdr *ip, __u8 ttl)
{
	__u16 old_word = ip->ttl << 8 | ip->protocol;
	__u16 new_word = ttl << 8 | ip->protocol;
	__u16 check = bpf_ntohs(ip->check);

	ip->ttl = ttl;
	ip->check = bpf_htons(~fold((__u16)~check + (__u16)~old_word + new_word));
}

/*
 * Turns the datagram around. Swapping source and destination changes no
 * checksum: a ones' complement sum does not depend on the order of its words.
 */
static __always_inline void reply(struct ethhdr *eth, struct iphdr *ip, struct udphdr *udp)
{
	unsigned char mac[ETH_ALEN];
	__be32 addr = ip->saddr;
	__be16 port = udp->source;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	ip->saddr = ip->daddr;
	ip->daddr = addr;
	udp->source = udp->dest;
	udp->dest = port;
	set_ttl(ip, REPLY_TTL);
}

SEC("xdp")
int udp_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct udphdr *udp;
	__u16 port;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->version != 4 || ip->ihl < 5)
		return XDP_DROP;
	if (ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	udp = (void *)ip + ip->ihl * 4;
	if ((void *)(udp + 1) > data_end)
		return XDP_DROP;

	port = bpf_ntohs(udp->dest);
	count(port);
	if (bpf_map_lookup_elem(&blocked_ports, &port))
		return XDP_DROP;
	if (echo_port == 0 || port != echo_port)
		return XDP_PASS;
	reply(eth, ip, udp);
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
