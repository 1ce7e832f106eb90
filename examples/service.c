/* An example service for `make demo`: a small threaded TCP server on 127.0.0.1 and clients that
 * talk to it, with the habits libguard looks for: a cache that is never freed, one connection
 * that is never closed, a lock that several workers fight over, a worker thread nobody joins,
 * and a timestamp taken from the wall clock. It runs for about two seconds and exits 0.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CLIENTS 4
#define REQUESTS 200

static pthread_mutex_t stats_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long served;
static char **cache;
static size_t cache_len;

/* Keeps every response it ever made: the leak a heap report should name. */
static void cache_response(const char *text)
{
	char **grown = realloc(cache, (cache_len + 1) * sizeof(*cache));
	if (!grown)
		return;
	cache = grown;
	cache[cache_len] = malloc(4096);
	if (cache[cache_len])
		snprintf(cache[cache_len], 4096, "%s", text);
	cache_len++;
}

static double wall_seconds(void)
{
	struct timeval tv;
	gettimeofday(&tv, NULL);   /* a wall clock used for durations: what the clock guard lists */
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

static void *serve(void *arg)
{
	int fd = (int)(long)arg;
	char buf[256];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = '\0';
		pthread_mutex_lock(&stats_lock);
		served++;
		usleep(50);   /* work under the lock: contention */
		pthread_mutex_unlock(&stats_lock);
		cache_response(buf);
		if (write(fd, buf, (size_t)n) != n)
			break;
	}
	close(fd);
	return NULL;
}

static void *accept_loop(void *arg)
{
	int lfd = (int)(long)arg;

	for (;;) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			return NULL;
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(long)fd) == 0)
			pthread_detach(t);
		else
			close(fd);
	}
}

static void *client(void *arg)
{
	struct sockaddr_in *addr = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char buf[256];

	if (fd < 0 || connect(fd, (struct sockaddr *)addr, sizeof(*addr)) != 0) {
		perror("client");
		return NULL;
	}
	for (int i = 0; i < REQUESTS; i++) {
		int len = snprintf(buf, sizeof(buf), "request %d", i);
		if (write(fd, buf, (size_t)len) != len || read(fd, buf, sizeof(buf)) <= 0)
			break;
	}
	close(fd);
	return NULL;
}

int main(void)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(addr);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	double start = wall_seconds();

	if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(lfd, 64) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&addr, &len) != 0) {
		perror("listen");
		return 1;
	}
	pthread_t acceptor, clients[CLIENTS];
	pthread_create(&acceptor, NULL, accept_loop, (void *)(long)lfd);   /* never joined */
	for (int i = 0; i < CLIENTS; i++)
		pthread_create(&clients[i], NULL, client, &addr);
	for (int i = 0; i < CLIENTS; i++)
		pthread_join(clients[i], NULL);

	/* A connection opened and forgotten: the fd report names this function. */
	int forgotten = socket(AF_INET, SOCK_STREAM, 0);
	connect(forgotten, (struct sockaddr *)&addr, sizeof(addr));

	pthread_mutex_lock(&stats_lock);
	printf("service: served %lu requests on 127.0.0.1:%d in %.2f s, cache holds %zu responses\n",
	       served, ntohs(addr.sin_port), wall_seconds() - start, cache_len);
	pthread_mutex_unlock(&stats_lock);
	return 0;
}
