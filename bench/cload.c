/*
 * A second, independent load generator for AoE targets (bench/target_bench.ts
 * --loadgen c): plain AF_PACKET socket, sendmmsg/recvmmsg batches, a fixed
 * number of ATA requests outstanding, retransmission after a timeout. It
 * shares no code with the project, so a result that holds with both load
 * generators is not an artefact of either. Compiled by the benchmark with gcc
 * into a temporary directory.
 *
 *   cload IFNAME DST_MAC SHELF SLOT read|write|randread DEPTH SECTORS IO_SECTORS
 *         CAPACITY DURATION_MS TIMEOUT_MS
 *
 * Prints one JSON line: requests, bytes, seconds, retransmits, errors.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef ETH_P_AOE
#define ETH_P_AOE 0x88a2
#endif
#define HDR 36 /* Ethernet 14 + AoE 10 + ATA 12 (aoe-protocol.md) */
#define MAX_DEPTH 4096
#define BATCH 64
#define FRAME_MAX 9018

static double now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int parse_mac(const char *text, uint8_t mac[6]) {
	unsigned v[6];
	if (sscanf(text, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6) {
		return -1;
	}
	for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
	return 0;
}

static uint8_t tx[MAX_DEPTH][FRAME_MAX];
static uint8_t rx[BATCH][FRAME_MAX];
static uint32_t tags[MAX_DEPTH];
static uint64_t lbas[MAX_DEPTH];
static double sent_at[MAX_DEPTH];
static uint8_t active[MAX_DEPTH];
static int pending[MAX_DEPTH];
static int npending;

int main(int argc, char **argv) {
	if (argc != 12) {
		fprintf(stderr, "usage: cload IFNAME DST_MAC SHELF SLOT read|write|randread DEPTH "
		                "SECTORS IO_SECTORS CAPACITY DURATION_MS TIMEOUT_MS\n");
		return 2;
	}
	const char *ifname = argv[1];
	uint8_t dst[6], src[6];
	if (parse_mac(argv[2], dst) < 0) {
		fprintf(stderr, "cload: bad MAC %s\n", argv[2]);
		return 2;
	}
	int shelf = atoi(argv[3]), slot = atoi(argv[4]);
	const char *mode = argv[5];
	int depth = atoi(argv[6]), sectors = atoi(argv[7]), io_sectors = atoi(argv[8]);
	uint64_t capacity = strtoull(argv[9], NULL, 10);
	double duration = atof(argv[10]), timeout = atof(argv[11]);
	int is_write = strcmp(mode, "write") == 0, is_rand = strcmp(mode, "randread") == 0;
	if (depth < 1 || depth > MAX_DEPTH || sectors < 1 || HDR + sectors * 512 > FRAME_MAX) {
		fprintf(stderr, "cload: bad depth or sectors\n");
		return 2;
	}

	int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_AOE));
	if (fd < 0) {
		perror("cload: socket");
		return 1;
	}
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	strncpy(ifr.ifr_name, ifname, IFNAMSIZ - 1);
	if (ioctl(fd, SIOCGIFINDEX, &ifr) < 0) {
		perror("cload: SIOCGIFINDEX");
		return 1;
	}
	int ifindex = ifr.ifr_ifindex;
	if (ioctl(fd, SIOCGIFHWADDR, &ifr) < 0) {
		perror("cload: SIOCGIFHWADDR");
		return 1;
	}
	memcpy(src, ifr.ifr_hwaddr.sa_data, 6);
	struct sockaddr_ll sll;
	memset(&sll, 0, sizeof sll);
	sll.sll_family = AF_PACKET;
	sll.sll_protocol = htons(ETH_P_AOE);
	sll.sll_ifindex = ifindex;
	if (bind(fd, (struct sockaddr *)&sll, sizeof sll) < 0) {
		perror("cload: bind");
		return 1;
	}
	int bufsize = 8 << 20;
	setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bufsize, sizeof bufsize);
	setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bufsize, sizeof bufsize);

	int frame_len = HDR + (is_write ? sectors * 512 : 0);
	for (int s = 0; s < depth; s++) {
		uint8_t *f = tx[s];
		memset(f, 0, HDR);
		memcpy(f, dst, 6);
		memcpy(f + 6, src, 6);
		f[12] = ETH_P_AOE >> 8;
		f[13] = ETH_P_AOE & 0xff;
		f[14] = 0x10; /* version 1, request */
		f[16] = shelf >> 8;
		f[17] = shelf & 0xff;
		f[18] = slot;
		f[19] = 0; /* ATA */
		f[24] = 0x40 | (is_write ? 0x01 : 0); /* E (LBA48), W */
		f[26] = sectors;
		f[27] = is_write ? 0x34 : 0x24; /* WRITE / READ SECTORS EXT */
		for (int i = HDR; i < frame_len; i++) f[i] = i & 0xff;
	}

	uint64_t next_lba = 0;
	int io_left = 0;
	int io_frames = io_sectors > sectors ? (io_sectors + sectors - 1) / sectors : 1;
	uint64_t span = capacity - (uint64_t)sectors * io_frames;
	uint32_t generation = 0;
	long requests = 0, retransmits = 0, errors = 0;
	double bytes = 0;

	struct mmsghdr txm[BATCH], rxm[BATCH];
	struct iovec txv[BATCH], rxv[BATCH];
	memset(rxm, 0, sizeof rxm);
	for (int i = 0; i < BATCH; i++) {
		rxv[i].iov_base = rx[i];
		rxv[i].iov_len = FRAME_MAX;
		rxm[i].msg_hdr.msg_iov = &rxv[i];
		rxm[i].msg_hdr.msg_iovlen = 1;
	}

#define PICK_LBA()                                                             \
	({                                                                         \
		uint64_t lba_;                                                         \
		if (is_rand) {                                                         \
			if (io_left == 0) {                                                \
				next_lba = ((uint64_t)(drand48() * (span / 8))) * 8;           \
				io_left = io_frames;                                           \
			}                                                                  \
			io_left--;                                                         \
			lba_ = next_lba;                                                   \
			next_lba += sectors;                                               \
		} else {                                                               \
			lba_ = next_lba;                                                   \
			next_lba = next_lba + sectors > capacity - sectors ? 0 : next_lba + sectors; \
		}                                                                      \
		lba_;                                                                  \
	})

	double start = now_ms(), end = start + duration, last_check = start;
	for (int s = 0; s < depth; s++) {
		lbas[s] = PICK_LBA();
		pending[npending++] = s;
	}
	int outstanding = depth;
	while (outstanding > 0 || npending > 0) {
		/* Send what is pending, in batches. */
		while (npending > 0) {
			int n = npending < BATCH ? npending : BATCH;
			double t = now_ms();
			for (int i = 0; i < n; i++) {
				int s = pending[i];
				generation = (generation + 1) & 0x7fff;
				uint32_t tag = 0x80000000u | generation << 16 | (uint32_t)s;
				tags[s] = tag;
				sent_at[s] = t;
				active[s] = 1;
				uint8_t *f = tx[s];
				f[20] = tag >> 24;
				f[21] = tag >> 16;
				f[22] = tag >> 8;
				f[23] = tag;
				uint64_t lba = lbas[s];
				for (int b = 0; b < 6; b++) f[28 + b] = (lba >> (8 * b)) & 0xff;
				txv[i].iov_base = f;
				txv[i].iov_len = frame_len < 60 ? 60 : frame_len;
				memset(&txm[i], 0, sizeof txm[i]);
				txm[i].msg_hdr.msg_iov = &txv[i];
				txm[i].msg_hdr.msg_iovlen = 1;
			}
			int sent = sendmmsg(fd, txm, n, 0);
			if (sent <= 0) {
				if (errno == ENOBUFS || errno == EAGAIN) break; /* retried by the timeout */
				perror("cload: sendmmsg");
				return 1;
			}
			memmove(pending, pending + sent, (npending - sent) * sizeof pending[0]);
			npending -= sent;
		}
		struct pollfd p = {.fd = fd, .events = POLLIN};
		double t = now_ms();
		if (t > end + 5000) break; /* a target that stopped answering */
		int wait = (int)(timeout / 4);
		if (poll(&p, 1, wait < 1 ? 1 : wait) < 0 && errno != EINTR) {
			perror("cload: poll");
			return 1;
		}
		int n = recvmmsg(fd, rxm, BATCH, MSG_DONTWAIT, NULL);
		t = now_ms();
		int refill = t < end;
		for (int i = 0; i < n; i++) {
			uint8_t *f = rx[i];
			if (rxm[i].msg_len < HDR || !(f[14] & 0x08) || memcmp(f, src, 6) != 0) continue;
			uint32_t tag = (uint32_t)f[20] << 24 | f[21] << 16 | f[22] << 8 | f[23];
			int s = tag & 0xffff;
			if (s >= depth || !active[s] || tags[s] != tag) continue; /* late duplicate */
			if (f[27] != 0x40 || (f[14] & 0x04)) errors++;
			requests++;
			bytes += sectors * 512.0;
			active[s] = 0;
			outstanding--;
			if (refill) {
				lbas[s] = PICK_LBA();
				pending[npending++] = s;
				outstanding++;
			}
		}
		if (t - last_check > timeout / 4) {
			last_check = t;
			for (int s = 0; s < depth; s++) {
				if (active[s] && t - sent_at[s] > timeout) {
					retransmits++;
					active[s] = 0; /* re-armed with a new tag when sent */
					pending[npending++] = s;
				}
			}
		}
	}
	printf("{\"requests\":%ld,\"bytes\":%.0f,\"seconds\":%.6f,\"retransmits\":%ld,\"errors\":%ld}\n",
	       requests, bytes, (now_ms() - start) / 1e3, retransmits, errors);
	return 0;
}
