/* Subcommands of the single pgwarden binary. Each returns the process exit
 * status: 0 success, 1 failure/refused, 2 usage error. */
#ifndef PGW_CMD_H
#define PGW_CMD_H

int cmd_run(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_validate(int argc, char **argv);
int cmd_convert_patroni(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
