/*
 * main.c - llmqd: reads the configuration, opens the store, recovers what a
 * crash left running, and runs the loop until SIGTERM or SIGINT. Everything
 * else lives in llmqd_core.
 */
#include "sock/cmd.h"
#include "service/config.h"
#include "store/files.h"
#include "engine/health.h"
#include "http/http.h"
#include "sock/ipc.h"
#include "gate/lane.h"
#include "view/live.h"
#include "llmqd.h"
#include "log.h"
#include "engine/models.h"
#include "paths.h"
#include "store/retention.h"
#include "engine/scheduler.h"
#include "service/sd.h"
#include "store/store.h"
#include "timeutil.h"

#include <curl/curl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config cfg;
static int recover_pending;    /* store_recover could not write at start: again each second */
static int64_t recover_before; /* this start: what recovery may touch is older */
static int saved_argc;
static char **saved_argv;

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct llmqd *d = arg;

	log_info("%s: finishing up", strsignal((int)sig));
	event_base_loopexit(d->base, NULL);
}

/*
 * A lane whose upstream is llmqd's own HTTP face would send each call back to
 * llmqd for ever: what an exported OPENAI_BASE_URL=http://127.0.0.1:8411/v1,
 * meant for the apps, does to a llmqd started from the same shell.
 */
static int lanes_loop_back(const struct config *c, const struct http *h, char *err, size_t len)
{
	const struct sockaddr_storage *self = http_tcp_listener(h);
	char url[sizeof(c->lanes[0].base_url)];
	int i;

	for (i = 0; self && i < c->n_lanes; i++) {
		if (!lane_url_is(c->lanes[i].base_url, self))
			continue;
		snprintf(err, len,
		         "lane %s: base_url %s is llmqd's own HTTP address: its calls would come "
		         "back to llmqd for ever. Point the lane at the provider (%s, e.g. "
		         "https://api.openai.com/v1); http://%s/v1 is for the apps on this host",
		         c->lanes[i].name, lane_redact_url(c->lanes[i].base_url, url, sizeof(url)),
		         c->config_file[0] ? "base_url in the lane's section" : "OPENAI_BASE_URL",
		         http_bound_addr(h));
		return -ELOOP;
	}
	return 0;
}

/*
 * SIGHUP: read the configuration again and apply the lanes' limits and keys
 * to the live gates; transfers in flight go on. A configuration that does
 * not load, or that adds, removes or renames lanes, is refused and the
 * running one kept. Sockets, database and HTTP address need a restart.
 */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	static struct config next;
	struct llmqd *d = arg;
	char err[1024];
	int i, r;

	sd_reloading();
	r = config_load(&next, saved_argc, saved_argv, err, sizeof(err));
	if (r != 0) {
		log_err("reload: %s; keeping the running configuration",
		        r < 0 ? err : "nothing to load");
		goto out;
	}
	if (next.n_lanes != cfg.n_lanes) {
		log_err("reload: the lanes changed from %d to %d; adding or removing lanes needs "
		        "a restart; keeping the running configuration",
		        cfg.n_lanes, next.n_lanes);
		goto out;
	}
	for (i = 0; i < cfg.n_lanes; i++) {
		if (strcmp(cfg.lanes[i].name, next.lanes[i].name) != 0) {
			log_err(
			    "reload: lane %s became %s; renaming lanes needs a restart; keeping "
			    "the running configuration",
			    cfg.lanes[i].name, next.lanes[i].name);
			goto out;
		}
		/* Its leases and its place in the fleet are under its share's key. */
		if (strcmp(config_lane_share(&cfg.lanes[i]), config_lane_share(&next.lanes[i]))) {
			log_err("reload: lane %s's share became %s; moving a lane to another share "
			        "needs a restart; keeping the running configuration",
			        cfg.lanes[i].name, config_lane_share(&next.lanes[i]));
			goto out;
		}
	}
	if (strcmp(cfg.socket_path, next.socket_path) || strcmp(cfg.db_path, next.db_path) ||
	    strcmp(cfg.http_addr, next.http_addr) || strcmp(cfg.http_socket, next.http_socket) ||
	    memcmp(&cfg.fleet, &next.fleet, sizeof(cfg.fleet)) != 0)
		log_warn("reload: socket, database, HTTP listener and [fleet] changes take effect "
		         "at the next restart");
	if (lanes_loop_back(&next, d->http, err, sizeof(err)) < 0) {
		log_err("reload: %s; keeping the running configuration", err);
		goto out;
	}
	for (i = 0; i < cfg.n_lanes; i++)
		cfg.lanes[i] = next.lanes[i];
	snprintf(cfg.admin_group, sizeof(cfg.admin_group), "%s", next.admin_group);
	cfg.http_log_bodies = next.http_log_bodies;
	memcpy(cfg.prices_file, next.prices_file, sizeof(cfg.prices_file));
	cfg.prices = next.prices;
	cfg.budgets = next.budgets;
	cfg.log_level = next.log_level;
	log_set_level(cfg.log_level);
	if (log_to_journal())
		log_set_sink(sd_log_sink);
	r = sched_reload(d->sched);
	if (r < 0) {
		log_err("reload: cannot load the lanes' keys: %s", strerror(-r));
		goto out;
	}
	models_refresh(d->models);
	log_info("reload: %d prices%s%s; %d [user] and [group] budget sections", cfg.prices.n,
	         cfg.prices_file[0] ? ", with " : "", cfg.prices_file, cfg.budgets.n);
	for (i = 0; i < cfg.n_lanes; i++)
		log_info("reload: lane %s: concurrency %d, stagger %lldms, tpm %lld, rpm %lld, "
		         "headroom %.2f",
		         cfg.lanes[i].name, cfg.lanes[i].limits.max_concurrency,
		         (long long)cfg.lanes[i].limits.stagger_ms,
		         (long long)cfg.lanes[i].limits.tpm, (long long)cfg.lanes[i].limits.rpm,
		         cfg.lanes[i].limits.headroom);
out:
	explicit_bzero(&next, sizeof(next));
	sd_ready("reloaded");
}

static void on_health(evutil_socket_t fd, short what, void *arg)
{
	struct llmqd *d = arg;
	int64_t requeued = 0;
	int removed = 0;

	health_check(d);
	if (recover_pending &&
	    store_recover(d->store, time_wall_ms(), recover_before, &requeued) == 0) {
		recover_pending = 0;
		log_info("requeued %lld jobs that were running when llmqd last stopped",
		         (long long)requeued);
		sched_kick(d->sched);
	}
	/* Deletions whose row the database refused (a full disk, a lock): again. */
	if (d->files && files_pending(d->files) &&
	    files_finish_deletes(d->files, d->store, &removed) == 0 && !files_pending(d->files))
		log_info("the records of deleted files are gone too");
}

/* WATCHDOG=1 and STATUS=, from a timer: sent only while the loop turns. */
static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct llmqd *d = arg;
	struct lane_snapshot snap;
	int64_t jobs = 0, tokens = 0, now = time_mono_ms();
	char status[512], paused[128] = "", db[256];
	size_t n = 0;
	int i, refuse;

	sd_watchdog_ping();
	store_backlog(d->store, NULL, &jobs, &tokens);
	for (i = 0; sched_lane_snapshot(d->sched, i, now, &snap) == 0; i++)
		if ((snap.gate.paused_until > now || snap.paused_at) && n < sizeof(paused) - 1)
			n += (size_t)snprintf(paused + n, sizeof(paused) - n, "%s%s", n ? "," : "",
			                      snap.cfg->name);
	if (!health_db(d, db, sizeof(db), &refuse))
		db[0] = '\0';
	snprintf(status, sizeof(status), "%lld queued or running, %d in flight%s%s%s%s",
	         (long long)jobs, sched_in_flight(d->sched), n ? "; paused: " : "", paused,
	         db[0] ? "; " : "", db);
	sd_status(status);
}

int main(int argc, char **argv)
{
	struct llmqd d = {0};
	struct event *sigterm = NULL, *sigint = NULL, *sighup = NULL, *tick = NULL;
	struct event *health = NULL;
	struct retention *retention = NULL;
	struct sd_sockets passed = {.ipc = -1, .http_tcp = -1, .http_unix = -1};
	struct ipc_limits lim;
	struct rlimit rl;
	struct timeval tv;
	int64_t wd;
	int64_t requeued = 0;
	int swept = 0;
	char err[1024], status[128], url[sizeof(cfg.lanes[0].base_url)];
	int r, fd, rc = EXIT_FAILURE, i;

	/* The database, its WAL and journal, and the sockets are the daemon's alone. */
	umask(0077);
	log_init("llmqd");
	saved_argc = argc;
	saved_argv = argv;
	r = config_load(&cfg, argc, argv, err, sizeof(err));
	if (r == 1)
		return EXIT_SUCCESS;
	if (r < 0) {
		fprintf(stderr, "llmqd: %s\n", err);
		return 64;
	}
	log_set_level(cfg.log_level);
	signal(SIGPIPE, SIG_IGN);
	/* Every client holds a descriptor: take all the kernel allows (systemd's soft
	 * limit is 1024, its hard limit far higher). */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			log_warn("cannot raise the open files limit: %s", strerror(errno));
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		log_err("cannot initialise libcurl");
		return EXIT_FAILURE;
	}
	d.cfg = &cfg;
	d.socket_gid = (gid_t)-1;
	d.started_mono = time_mono_ms();
	d.disk_free = -1;
	d.base = event_base_new();
	if (!d.base) {
		log_err("cannot create the event loop");
		goto out;
	}

	r = paths_mkparent(cfg.db_path);
	if (r == 0)
		r = store_open(cfg.db_path, &d.store);
	for (i = 0; r == -ENOSPC; i++) {
		/* The schema must be brought up to date first: wait for room. */
		if (i % 12 == 0)
			log_err("the database %s needs room on its disk to bring its schema up to "
			        "date, and the disk is full: free some space there (the uploaded "
			        "files are in %s-files); trying again every 5 s",
			        cfg.db_path, cfg.db_path);
		sd_status("waiting for room on the database's disk");
		sleep(5);
		r = store_open(cfg.db_path, &d.store);
	}
	if (r < 0) {
		log_err("cannot open the database %s: %s%s", cfg.db_path, strerror(-r),
		        r == -EPROTO ? " (written by a newer llmqd; upgrade llmqd)"
		                     : "; check that its directory is writable, or set LLMQ_DB");
		goto out;
	}
	r = store_limit_size(d.store, cfg.db_max_bytes);
	if (r < 0) {
		log_err("cannot cap the database's size: %s", store_errmsg(d.store));
		goto out;
	}
	if (store_exclusive(d.store))
		log_warn("the disk of %s has no room for the database's shared-memory index: "
		         "llmqd keeps it in memory and holds the database exclusively, so other "
		         "programs (sqlite3) cannot read it until llmqd restarts with room",
		         cfg.db_path);
	recover_before = time_wall_ms();
	r = store_recover(d.store, recover_before, recover_before, &requeued);
	if (r == -ENOSPC || r == -EBUSY) {
		/* Serve what is stored meanwhile; those jobs wait, nothing is lost. */
		log_warn("cannot requeue the jobs that were running when llmqd last stopped: "
		         "%s; they wait, and llmqd tries again every second",
		         store_errmsg(d.store));
		recover_pending = 1;
	} else if (r < 0) {
		log_err("cannot recover interrupted jobs: %s", store_errmsg(d.store));
		goto out;
	}
	if (requeued > 0)
		log_info("requeued %lld jobs that were running when llmqd last stopped",
		         (long long)requeued);
	r = files_open(cfg.db_path, &d.files);
	if (r == 0)
		r = files_sweep(d.files, d.store, &swept);
	if (r < 0) {
		log_err("cannot use the uploaded files' directory %s-files: %s%s", cfg.db_path,
		        strerror(-r),
		        r == -EPERM ? " (it must be llmqd's own, mode 0700)"
		                    : "; check that the database's directory is writable");
		goto out;
	}
	if (swept > 0)
		log_info("removed %d uploaded files that an interrupted upload or delete left",
		         swept);

	/* The free-space floor and the database's health, before anyone is served. */
	health_check(&d);
	r = sched_new(&d, &d.sched);
	if (r < 0) {
		log_err("cannot start the scheduler: %s", strerror(-r));
		goto out;
	}
	r = models_new(&d, &d.models);
	if (r < 0) {
		log_err("cannot start asking the upstreams for their models: %s", strerror(-r));
		goto out;
	}
	r = live_new(&d, &d.live);
	if (r < 0) {
		log_err("cannot start sampling the lanes for the live page: %s", strerror(-r));
		goto out;
	}
	r = sd_listen_sockets(&passed, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		goto out;
	}
	fd = passed.ipc;
	if (fd < 0 && (r = paths_mkparent(cfg.socket_path)) < 0) {
		log_err("cannot create the directory of %s: %s", cfg.socket_path, strerror(-r));
		goto out;
	}
	if (cfg.socket_group[0]) {
		struct group *gr = getgrnam(cfg.socket_group);

		if (!gr) {
			log_err("socket_group %s: no such group; create it (groupadd %s) or unset "
			        "LLMQ_SOCKET_GROUP",
			        cfg.socket_group, cfg.socket_group);
			goto out;
		}
		d.socket_gid = gr->gr_gid;
	}
	lim.max_clients = cfg.max_connections;
	lim.max_per_uid = cfg.max_connections_per_user;
	lim.deadline_ms = cfg.client_timeout_ms;
	r = ipc_new(d.base, fd, cfg.socket_path, d.socket_gid, &lim, cmd_dispatch, &d, &d.ipc);
	if (r < 0) {
		log_err("cannot listen on %s: %s%s", cfg.socket_path, strerror(-r),
		        r == -EADDRINUSE ? " (another llmqd is running there; stop it or use "
		                           "--socket)"
		                         : "");
		goto out;
	}
	r = retention_new(&d, sched_writer(d.sched), &retention);
	if (r < 0) {
		log_err("cannot start retention: %s", strerror(-r));
		goto out;
	}
	r = http_new(&d, &passed, &d.http);
	if (r < 0) {
		log_err("cannot listen for HTTP on %s%s%s: %s; set LLMQ_HTTP_ADDR (or --http) to "
		        "another HOST:PORT, or off",
		        cfg.http_addr, cfg.http_socket[0] ? " and " : "", cfg.http_socket,
		        strerror(-r));
		goto out;
	}
	snprintf(d.http_addr, sizeof(d.http_addr), "%s", http_bound_addr(d.http));
	r = lanes_loop_back(&cfg, d.http, err, sizeof(err));
	if (r < 0) {
		log_err("%s", err);
		goto out;
	}
	sigterm = evsignal_new(d.base, SIGTERM, on_signal, &d);
	sigint = evsignal_new(d.base, SIGINT, on_signal, &d);
	sighup = evsignal_new(d.base, SIGHUP, on_reload, &d);
	tick = event_new(d.base, -1, EV_PERSIST, on_tick, &d);
	health = event_new(d.base, -1, EV_PERSIST, on_health, &d);
	if (!sigterm || !sigint || !sighup || !tick || !health || evsignal_add(sigterm, NULL) < 0 ||
	    evsignal_add(sigint, NULL) < 0 || evsignal_add(sighup, NULL) < 0) {
		log_err("cannot install signal handlers");
		goto out;
	}
	for (i = 0; i < cfg.n_lanes; i++)
		log_info(
		    "lane %s: %s, concurrency %d, stagger %lldms, tpm %lld, rpm %lld, "
		    "headroom %.2f%s",
		    cfg.lanes[i].name, lane_redact_url(cfg.lanes[i].base_url, url, sizeof(url)),
		    cfg.lanes[i].limits.max_concurrency, (long long)cfg.lanes[i].limits.stagger_ms,
		    (long long)cfg.lanes[i].limits.tpm, (long long)cfg.lanes[i].limits.rpm,
		    cfg.lanes[i].limits.headroom, cfg.lanes[i].is_default ? " (default lane)" : "");
	log_info("llmqd %s listening on %s, database %s", LLMQ_VERSION,
	         fd >= 0 ? "the socket systemd passed" : cfg.socket_path, cfg.db_path);
	if (http_bound_addr(d.http)[0])
		log_info("OpenAI-compatible HTTP on http://%s/v1%s", http_bound_addr(d.http),
		         passed.http_tcp >= 0 ? " (the socket systemd passed)" : "");
	if (passed.http_unix >= 0)
		log_info("OpenAI-compatible HTTP on the Unix socket systemd passed");
	else if (cfg.http_socket[0])
		log_info("OpenAI-compatible HTTP on the Unix socket %s", cfg.http_socket);
	snprintf(status, sizeof(status), "serving %d lane%s", cfg.n_lanes,
	         cfg.n_lanes == 1 ? "" : "s");
	sd_ready(status);
	/* Half the watchdog's interval (or every 5 s for STATUS= alone). */
	wd = sd_watchdog_ms();
	wd = wd > 0 && wd / 2 < 5000 ? wd / 2 : 5000;
	time_to_timeval(wd, &tv);
	event_add(tick, &tv);
	time_to_timeval(1000, &tv);
	event_add(health, &tv);
	/* The loop serves from here: never wait long on another program's lock. */
	store_serving(d.store);
	sched_kick(d.sched);
	/*
	 * One turn at a time, then the turn's own after-work (as redis's
	 * beforesleep): what a turn's callbacks queued for the database is
	 * written before the loop sleeps again, however busy the loop is.
	 */
	while (!event_base_got_exit(d.base)) {
		if (event_base_loop(d.base, EVLOOP_ONCE) < 0) {
			log_err("event loop failed");
			goto out;
		}
		sched_after_turn(d.sched);
	}
	sd_stopping();
	rc = EXIT_SUCCESS;
out:
	retention_free(retention);
	http_free(d.http);
	live_free(d.live);
	models_free(d.models);
	ipc_free(d.ipc);
	sched_free(d.sched);
	files_free(d.files);
	store_free(d.store);
	if (sigterm)
		event_free(sigterm);
	if (sigint)
		event_free(sigint);
	if (sighup)
		event_free(sighup);
	if (tick)
		event_free(tick);
	if (health)
		event_free(health);
	if (d.base)
		event_base_free(d.base);
	curl_global_cleanup();
	return rc;
}
