/*
 * plcsim: runs an AVR firmware (ELF) in simavr in real time and connects its
 * UARTs to the outside, so the real plcmail gateway can talk to a simulated
 * PLC:
 *   UART0  <-> a pseudo-terminal (its path is printed: "PTY /dev/pts/N"),
 *              or with -x, to the program's own stdout (for sketches that
 *              print results) while commands still come from stdin;
 *   UART1  <-> a TCP connection to -t HOST:PORT (the SMTP client example
 *              bridged to a mail server), opened after -T ms of simulated
 *              time (default 100), once the firmware has enabled the UART:
 *              simavr drops bytes that arrive at a disabled receiver.
 * Input pins are driven from the command line (-p E4=1) and from stdin
 * ("pin E4 0"); "quit" or end of stdin stops the simulation. With -e FILE the
 * EEPROM is loaded from FILE at start and saved back at exit, so a restart
 * of plcsim is a reboot of the PLC with its EEPROM kept.
 *
 * Analog noise: every ADC conversion of a pin (ADC0..15) reads a random
 * voltage from /dev/urandom, as a floating or noisy input would; and the SRAM
 * holds random bytes at start, like a chip after power-up (simavr zeroes it).
 * Both are entropy the firmware may use (a random first boot id after an
 * EEPROM erase); -E (erased) starts with an erased EEPROM even if the -e
 * file exists (and then saves over it).
 *
 * Time: the simulated clock is held to the wall clock (at most a few ms
 * ahead), so the firmware's millis() and the gateway's timeouts agree.
 *
 * -u N puts UART N on the pty instead of UART0 (3: the RS-485 port of a
 * Controllino MAXI/MEGA). -r PORTBIT[:BAUD] watches an RS-485 driver-enable
 * pin (J5 on the Controllino): every byte must leave while it is high, and it
 * may only drop once the last byte had time to leave the shift register
 * (one character time at BAUD, default 115200). Violations are counted and
 * printed at exit as "RS485 bytes=N violations=M". -R PORTBIT also watches
 * the receiver enable /RE (J6, active low): it must be high while bytes
 * leave (else the receiver echoes them) and low at the end.
 *
 * With -l PATH a symlink to the pty is (re)made at PATH, a stable device name
 * for the gateway's config across restarts of plcsim (like socat's link=).
 *
 * usage: plcsim [-m MCU] [-f HZ] [-e EEPROM [-E]] [-p PORTBIT=V]... [-u N] [-r PORTBIT[:BAUD]]
 *               [-l LINK] [-t HOST:PORT [-T MS]] [-x] firmware.elf
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <simavr/avr_adc.h>
#include <simavr/avr_eeprom.h>
#include <simavr/avr_ioport.h>
#include <simavr/avr_uart.h>
#include <simavr/sim_avr.h>
#include <simavr/sim_elf.h>
#include <simavr/sim_io.h>
#include <simavr/sim_irq.h>
#include <simavr/sim_time.h>

/* One UART bridged to a file descriptor. Bytes from the outside wait in
 * `in` until the simulated UART signals room (XON); bytes from the firmware
 * are written to the descriptor as they come. */
struct bridge {
	avr_t *avr;
	char name;            /* '0', '1', ... */
	int fd;               /* -1: not connected */
	avr_irq_t *input;     /* raise to give the AVR a byte */
	int xon;
	unsigned char in[4096];
	size_t in_len, in_pos;
	unsigned long long tx, rx, dropped;
};

static volatile sig_atomic_t stop_requested;

/* RS-485 direction check (-r). */
static struct {
	avr_t *avr;
	int on;                        /* watching */
	int de;                        /* current level of the enable pin */
	avr_cycle_count_t last_byte;   /* cycle of the last byte written */
	avr_cycle_count_t char_cycles; /* one character (10 bits) at the baud rate */
	unsigned long bytes, violations;
	int re_on, re;                 /* -R: /RE watched, its level */
	unsigned long echoed;          /* bytes sent with the receiver on */
	char watched; /* the UART on the pty */
} rs485;

static void rs485_byte(void) {
	if (!rs485.on) return;
	rs485.bytes++;
	rs485.last_byte = rs485.avr->cycle;
	if (!rs485.de) rs485.violations++; /* sent while the driver was off */
	if (rs485.re_on && !rs485.re) rs485.echoed++; /* receiver on: our bytes echo back */
}

static void rs485_re_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)param;
	rs485.re = value != 0;
}

static void rs485_de_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)param;
	int de = value != 0;
	/* Released before the last character had left: its end is cut off. */
	if (rs485.de && !de && rs485.bytes && rs485.avr->cycle - rs485.last_byte < rs485.char_cycles)
		rs485.violations++;
	rs485.de = de;
}

static void on_signal(int sig) { (void)sig; stop_requested = 1; }

static void die(const char *what) {
	perror(what);
	exit(1);
}

static void bridge_feed(struct bridge *b) {
	while (b->xon && b->in_pos < b->in_len) {
		avr_raise_irq(b->input, b->in[b->in_pos++]);
		b->rx++;
	}
	if (b->in_pos == b->in_len) b->in_pos = b->in_len = 0;
}

static void uart_out_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	struct bridge *b = param;
	unsigned char c = (unsigned char)value;
	b->tx++;
	if (b->name == rs485.watched) rs485_byte();
	if (b->fd < 0) return;
	for (;;) {
		ssize_t n = write(b->fd, &c, 1);
		if (n == 1) return;
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && errno == EAGAIN) {
			/* The reader is slow (or gone): wait a little, then drop. */
			struct pollfd p = {b->fd, POLLOUT, 0};
			if (poll(&p, 1, 100) > 0) continue;
		}
		b->dropped++;
		return;
	}
}

static void uart_xon_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)value;
	struct bridge *b = param;
	b->xon = 1;
	bridge_feed(b);
}

static void uart_xoff_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	(void)value;
	((struct bridge *)param)->xon = 0;
}

static void bridge_attach(struct bridge *b, avr_t *avr, char name, int fd) {
	memset(b, 0, sizeof *b);
	b->avr = avr;
	b->name = name;
	b->fd = fd;
	b->xon = 1;
	/* No "stdio" echo of the UART on the simulator console. */
	uint32_t flags = 0;
	avr_ioctl(avr, AVR_IOCTL_UART_GET_FLAGS(name), &flags);
	flags &= ~AVR_UART_FLAG_STDIO;
	avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS(name), &flags);
	b->input = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(name), UART_IRQ_INPUT);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(name), UART_IRQ_OUTPUT),
	                        uart_out_hook, b);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(name), UART_IRQ_OUT_XON),
	                        uart_xon_hook, b);
	avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ(name), UART_IRQ_OUT_XOFF),
	                        uart_xoff_hook, b);
}

/* Reads what is waiting on the bridge's descriptor. Returns 0 at EOF. */
static int bridge_read(struct bridge *b) {
	if (b->fd < 0) return 1;
	if (b->in_len == sizeof b->in) return 1;
	ssize_t n = read(b->fd, b->in + b->in_len, sizeof b->in - b->in_len);
	if (n > 0) {
		b->in_len += (size_t)n;
		bridge_feed(b);
		return 1;
	}
	if (n == 0) return 0;
	return errno == EAGAIN || errno == EINTR || errno == EIO; /* EIO: pty slave closed for now */
}

static int open_pty(char *path, size_t len, int *slave) {
	int m = posix_openpt(O_RDWR | O_NOCTTY);
	if (m < 0 || grantpt(m) || unlockpt(m)) die("pty");
	if (ptsname_r(m, path, len)) die("ptsname");
	/* Keep the slave open ourselves: a gateway that closes and reopens the
	 * device (restart) then never leaves the master in a hung-up state. */
	*slave = open(path, O_RDWR | O_NOCTTY);
	if (*slave < 0) die(path);
	struct termios t;
	if (tcgetattr(*slave, &t) == 0) {
		cfmakeraw(&t);
		cfsetspeed(&t, B115200);
		tcsetattr(*slave, TCSANOW, &t);
	}
	fcntl(m, F_SETFL, O_NONBLOCK);
	return m;
}

static int dial(const char *hostport) {
	char host[256];
	snprintf(host, sizeof host, "%s", hostport);
	char *colon = strrchr(host, ':');
	if (!colon) {
		fprintf(stderr, "plcsim: -t wants HOST:PORT\n");
		exit(2);
	}
	*colon = 0;
	struct addrinfo hints = {0}, *res;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, colon + 1, &hints, &res)) {
		fprintf(stderr, "plcsim: cannot resolve %s\n", hostport);
		exit(1);
	}
	int fd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
	if (fd < 0 || connect(fd, res->ai_addr, res->ai_addrlen)) die(hostport);
	freeaddrinfo(res);
	fcntl(fd, F_SETFL, O_NONBLOCK);
	return fd;
}

/* Drives an input pin from outside, like a switch with a strong pull. The
 * value is also registered as the port's "external" state, so that the
 * firmware's pinMode(INPUT_PULLUP) does not override it. */
static int set_pin(avr_t *avr, const char *spec, int value) {
	static uint8_t mask[26], level[26];
	char port = spec[0];
	int bit = spec[1] - '0';
	if (port < 'A' || port > 'L' || bit < 0 || bit > 7 || spec[2]) return -1;
	avr_irq_t *irq = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit);
	if (!irq) return -1;
	int i = port - 'A';
	mask[i] |= (uint8_t)(1 << bit);
	level[i] = (uint8_t)((level[i] & ~(1 << bit)) | ((value ? 1 : 0) << bit));
	avr_ioport_external_t ext = {.name = (unsigned long)port, .mask = mask[i], .value = level[i]};
	avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL(port), &ext);
	avr_raise_irq(irq, value ? 1 : 0);
	return 0;
}

static void eeprom_io(avr_t *avr, const char *path, int save) {
	if (!path) return;
	static unsigned char buf[4096];
	avr_eeprom_desc_t d = {.ee = buf, .offset = 0, .size = avr->e2end + 1};
	if (d.size > sizeof buf) d.size = sizeof buf;
	if (save) {
		avr_ioctl(avr, AVR_IOCTL_EEPROM_GET, &d);
		/* GET points d.ee at the simulator's own copy. */
		FILE *f = fopen(path, "wb");
		if (!f || fwrite(d.ee, 1, d.size, f) != d.size) die(path);
		fclose(f);
		return;
	}
	FILE *f = fopen(path, "rb");
	if (!f) return; /* first boot: erased EEPROM */
	size_t n = fread(buf, 1, d.size, f);
	fclose(f);
	d.size = (uint32_t)n;
	avr_ioctl(avr, AVR_IOCTL_EEPROM_SET, &d);
}

static FILE *urandom;

static uint32_t random32(void) {
	uint32_t v = 0;
	if (!urandom || fread(&v, sizeof v, 1, urandom) != 1) v = (uint32_t)rand();
	return v;
}

/* A conversion starts: give its pin a noisy voltage (millivolts). */
static void adc_trigger_hook(struct avr_irq_t *irq, uint32_t value, void *param) {
	(void)irq;
	avr_t *avr = param;
	union {
		avr_adc_mux_t mux;
		uint32_t v;
	} m = {.v = value};
	if (m.mux.kind != ADC_MUX_SINGLE || m.mux.src > 15) return;
	avr_raise_irq(avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0 + m.mux.src), random32() % 5001);
}

static void power_up_noise(avr_t *avr) {
	urandom = fopen("/dev/urandom", "rb");
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for (uint32_t a = (uint32_t)avr->ioend + 1; a <= avr->ramend; a++) avr->data[a] = (uint8_t)random32();
	avr_irq_t *trig = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_OUT_TRIGGER);
	if (trig) avr_irq_register_notify(trig, adc_trigger_hook, avr);
}

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void command(avr_t *avr, char *line) {
	char what[16], pin[8];
	int v;
	if (sscanf(line, "%15s %7s %d", what, pin, &v) == 3 && !strcmp(what, "pin")) {
		if (set_pin(avr, pin, v)) fprintf(stderr, "plcsim: bad pin %s\n", pin);
	} else if (sscanf(line, "%15s", what) == 1 && !strcmp(what, "quit")) {
		stop_requested = 1;
	} else if (line[0] && line[0] != '\n') {
		fprintf(stderr, "plcsim: unknown command: %s", line);
	}
}

int main(int argc, char **argv) {
	const char *mcu = "atmega2560", *eeprom = NULL, *tcp = NULL, *link = NULL, *de_pin = NULL, *re_pin = NULL;
	char uart = '0';
	uint32_t freq = 16000000;
	int opt, to_stdout = 0, dial_ms = 100, erased = 0;
	char *pins[16];
	int npins = 0;
	while ((opt = getopt(argc, argv, "m:f:e:Ep:l:t:T:u:r:R:x")) != -1) {
		switch (opt) {
		case 'm': mcu = optarg; break;
		case 'f': freq = (uint32_t)strtoul(optarg, NULL, 0); break;
		case 'e': eeprom = optarg; break;
		case 'E': erased = 1; break;
		case 'p': if (npins < 16) pins[npins++] = optarg; break;
		case 't': tcp = optarg; break;
		case 'T': dial_ms = atoi(optarg); break;
		case 'l': link = optarg; break;
		case 'u': uart = optarg[0]; break;
		case 'r': de_pin = optarg; break;
		case 'R': re_pin = optarg; break;
		case 'x': to_stdout = 1; break;
		default:
			fprintf(stderr, "usage: %s [-m MCU] [-f HZ] [-e EEPROM [-E]] [-p PORTBIT=V]... [-u N] [-r PORTBIT[:BAUD] [-R PORTBIT]] [-l LINK] [-t HOST:PORT [-T MS]] [-x] firmware.elf\n", argv[0]);
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "plcsim: one firmware ELF file expected\n");
		return 2;
	}
	if (tcp && uart == '1') {
		fprintf(stderr, "plcsim: -t uses UART1, which -u 1 already puts on the pty\n");
		return 2;
	}

	/* simavr's loader prints "Loaded N .text ..." on stdout, which is the
	 * UART with -x and the PTY line otherwise: send it to stderr. */
	fflush(stdout);
	int saved_stdout = dup(1);
	dup2(2, 1);
	elf_firmware_t fw;
	memset(&fw, 0, sizeof fw);
	if (elf_read_firmware(argv[optind], &fw)) {
		fprintf(stderr, "plcsim: cannot read %s\n", argv[optind]);
		return 1;
	}
	avr_t *avr = avr_make_mcu_by_name(mcu);
	if (!avr) {
		fprintf(stderr, "plcsim: unknown MCU %s\n", mcu);
		return 1;
	}
	avr_init(avr);
	avr->frequency = freq;
	avr->log = 1; /* errors only */
	avr_load_firmware(avr, &fw);
	fflush(stdout);
	dup2(saved_stdout, 1);
	close(saved_stdout);
	if (!erased) eeprom_io(avr, eeprom, 0);
	power_up_noise(avr);
	for (int i = 0; i < npins; i++) {
		char spec[8];
		int v;
		if (sscanf(pins[i], "%7[^=]=%d", spec, &v) != 2 || set_pin(avr, spec, v)) {
			fprintf(stderr, "plcsim: bad -p %s (want e.g. E4=1)\n", pins[i]);
			return 2;
		}
	}

	struct bridge u0, u1;
	int slave = -1;
	if (to_stdout) {
		fcntl(1, F_SETFL, fcntl(1, F_GETFL) & ~O_NONBLOCK);
		bridge_attach(&u0, avr, uart, 1);
		u0.fd = 1;
	} else {
		char path[128];
		int master = open_pty(path, sizeof path, &slave);
		bridge_attach(&u0, avr, uart, master);
		if (link) {
			char tmp[4096];
			snprintf(tmp, sizeof tmp, "%s.tmp%d", link, (int)getpid());
			unlink(tmp);
			if (symlink(path, tmp) || rename(tmp, link)) die(link);
		}
		printf("PTY %s\n", path);
	}
	if (de_pin) {
		char port;
		int bit;
		unsigned long baud = 115200;
		if (sscanf(de_pin, "%c%d:%lu", &port, &bit, &baud) < 2 || bit < 0 || bit > 7) {
			fprintf(stderr, "plcsim: bad -r %s (want e.g. J5 or J5:9600)\n", de_pin);
			return 2;
		}
		rs485.avr = avr;
		rs485.on = 1;
		rs485.watched = uart;
		rs485.char_cycles = (avr_cycle_count_t)freq * 10 / baud;
		avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit), rs485_de_hook, NULL);
		if (re_pin) {
			if (sscanf(re_pin, "%c%d", &port, &bit) != 2 || bit < 0 || bit > 7) {
				fprintf(stderr, "plcsim: bad -R %s (want e.g. J6)\n", re_pin);
				return 2;
			}
			rs485.re_on = 1;
			avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ(port), bit), rs485_re_hook, NULL);
		}
	}
	int have_u1 = 0;
	if (tcp) bridge_attach(&u1, avr, '1', -1);
	avr_cycle_count_t dial_at = (avr_cycle_count_t)freq / 1000 * (avr_cycle_count_t)dial_ms;
	fflush(stdout);

	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGPIPE, SIG_IGN);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);

	char cmd[256];
	size_t cmd_len = 0;
	int stdin_open = 1;
	uint64_t start = now_ns();
	const avr_cycle_count_t slice = freq / 1000; /* 1 ms of simulated time */
	avr_cycle_count_t next_check = slice;
	int state = cpu_Running;
	uint64_t max_lag_ns = 0;
	int stall_ms = getenv("PLCSIM_STALL_MS") ? atoi(getenv("PLCSIM_STALL_MS")) : 0;
	while (!stop_requested && state != cpu_Done && state != cpu_Crashed) {
		state = avr_run(avr);
		if (avr->cycle < next_check) continue;
		next_check = avr->cycle + slice;
		if (tcp && !have_u1 && u1.fd < 0 && avr->cycle >= dial_at) {
			u1.fd = dial(tcp);
			have_u1 = 1;
		}

		/* PLCSIM_STALL_MS: stall now and then, as on a loaded host. */
		if (stall_ms && random32() % 200 == 0) usleep((useconds_t)(random32() % stall_ms) * 1000);
		/* Hold simulated time to wall time. */
		uint64_t sim_ns = avr_cycles_to_nsec(avr, avr->cycle);
		uint64_t wall_ns = now_ns() - start;
		int wait_ms = sim_ns > wall_ns + 2000000 ? (int)((sim_ns - wall_ns) / 1000000) : 0;
		/* How far the simulation fell behind the wall clock (a loaded host):
		 * the firmware's timers then run slow in wall time. */
		if (wall_ns > sim_ns && wall_ns - sim_ns > max_lag_ns) max_lag_ns = wall_ns - sim_ns;

		struct pollfd p[3];
		int np = 0;
		p[np++] = (struct pollfd){stdin_open ? 0 : -1, POLLIN, 0};
		p[np++] = (struct pollfd){to_stdout ? -1 : u0.fd, POLLIN, 0};
		p[np++] = (struct pollfd){have_u1 ? u1.fd : -1, POLLIN, 0};
		if (poll(p, np, wait_ms) < 0 && errno != EINTR) die("poll");
		if (p[0].revents & (POLLIN | POLLHUP)) {
			ssize_t n = read(0, cmd + cmd_len, sizeof cmd - 1 - cmd_len);
			if (n == 0) {
				stdin_open = 0;
				stop_requested = 1;
			} else if (n > 0) {
				cmd_len += (size_t)n;
				char *nl;
				while ((nl = memchr(cmd, '\n', cmd_len))) {
					*nl = 0;
					command(avr, cmd);
					size_t used = (size_t)(nl - cmd) + 1;
					memmove(cmd, nl + 1, cmd_len - used);
					cmd_len -= used;
				}
				if (cmd_len == sizeof cmd - 1) cmd_len = 0;
			}
		}
		if (p[1].revents & POLLIN) bridge_read(&u0);
		if (have_u1 && (p[2].revents & (POLLIN | POLLHUP)) && !bridge_read(&u1)) {
			/* The server hung up: the firmware sees silence from now on. */
			close(u1.fd);
			u1.fd = -2;
			have_u1 = 0;
		}
		/* The UART may have made room without a new XON since. */
		bridge_feed(&u0);
		if (have_u1) bridge_feed(&u1);
	}
	eeprom_io(avr, eeprom, 1);
	fprintf(stderr, "plcsim: stopped at %.3f s simulated (state %d); uart%c tx %llu rx %llu dropped %llu; "
	        "max lag behind the wall clock %.3f s\n",
	        avr_cycles_to_nsec(avr, avr->cycle) / 1e9, state, uart, u0.tx, u0.rx, u0.dropped, max_lag_ns / 1e9);
	if (rs485.on) {
		/* With -R: bytes sent while /RE was low (the receiver heard our own
		 * frame), and whether /RE was left high (receiver off: deaf). */
		if (rs485.re_on)
			printf("RS485 bytes=%lu violations=%lu echoed=%lu deaf=%d\n", rs485.bytes, rs485.violations,
			       rs485.echoed, rs485.re);
		else
			printf("RS485 bytes=%lu violations=%lu\n", rs485.bytes, rs485.violations);
		fflush(stdout);
	}
	if (slave >= 0) close(slave);
	if (link) unlink(link); /* like an unplugged USB adapter */
	return state == cpu_Crashed ? 1 : 0;
}
