# bash completion for ctrpy: generated from the Click tree by `ctrpy completion bash`
# (scripts/gen_completions.py). Do not edit: regenerate.
# Install: ctrpy completion bash > /etc/bash_completion.d/ctrpy   (or: source <(ctrpy completion bash))
# Needs bash 4 or later (associative arrays).

# command path -> its subcommands
declare -gA _ctrpy_children=(
  ['ctrpy']='completion config containers content events exec gc images info leases login logout logs namespaces network ps pull push run runtime snapshots tasks version'
  ['ctrpy config']='default dump'
  ['ctrpy containers']='create info label ls rm'
  ['ctrpy content']='abort active get ingest label ls rm'
  ['ctrpy images']='check inspect ls pull push rm tag unpack'
  ['ctrpy leases']='create ls rm'
  ['ctrpy namespaces']='create label ls rm'
  ['ctrpy network']='check create inspect ls prune rm'
  ['ctrpy runtime']='create delete exec kill list pause ps resume run start state'
  ['ctrpy snapshots']='commit info label ls mounts prepare rm tree usage view'
  ['ctrpy tasks']='attach exec kill ls metrics pause ps resume rm start wait'
)
# 'path word' -> the subcommand it names (aliases included)
declare -gA _ctrpy_alias=(
  ['ctrpy completion']='completion'
  ['ctrpy config']='config'
  ['ctrpy containers']='containers'
  ['ctrpy content']='content'
  ['ctrpy events']='events'
  ['ctrpy exec']='exec'
  ['ctrpy gc']='gc'
  ['ctrpy images']='images'
  ['ctrpy info']='info'
  ['ctrpy leases']='leases'
  ['ctrpy login']='login'
  ['ctrpy logout']='logout'
  ['ctrpy logs']='logs'
  ['ctrpy namespaces']='namespaces'
  ['ctrpy network']='network'
  ['ctrpy ps']='ps'
  ['ctrpy pull']='pull'
  ['ctrpy push']='push'
  ['ctrpy run']='run'
  ['ctrpy runtime']='runtime'
  ['ctrpy snapshots']='snapshots'
  ['ctrpy tasks']='tasks'
  ['ctrpy version']='version'
  ['ctrpy i']='images'
  ['ctrpy image']='images'
  ['ctrpy c']='containers'
  ['ctrpy container']='containers'
  ['ctrpy t']='tasks'
  ['ctrpy task']='tasks'
  ['ctrpy snapshot']='snapshots'
  ['ctrpy ns']='namespaces'
  ['ctrpy namespace']='namespaces'
  ['ctrpy lease']='leases'
  ['ctrpy net']='network'
  ['ctrpy networks']='network'
  ['ctrpy config default']='default'
  ['ctrpy config dump']='dump'
  ['ctrpy containers create']='create'
  ['ctrpy containers info']='info'
  ['ctrpy containers label']='label'
  ['ctrpy containers ls']='ls'
  ['ctrpy containers rm']='rm'
  ['ctrpy containers list']='ls'
  ['ctrpy containers remove']='rm'
  ['ctrpy containers delete']='rm'
  ['ctrpy containers del']='rm'
  ['ctrpy content abort']='abort'
  ['ctrpy content active']='active'
  ['ctrpy content get']='get'
  ['ctrpy content ingest']='ingest'
  ['ctrpy content label']='label'
  ['ctrpy content ls']='ls'
  ['ctrpy content rm']='rm'
  ['ctrpy content list']='ls'
  ['ctrpy content remove']='rm'
  ['ctrpy content delete']='rm'
  ['ctrpy content del']='rm'
  ['ctrpy images check']='check'
  ['ctrpy images inspect']='inspect'
  ['ctrpy images ls']='ls'
  ['ctrpy images pull']='pull'
  ['ctrpy images push']='push'
  ['ctrpy images rm']='rm'
  ['ctrpy images tag']='tag'
  ['ctrpy images unpack']='unpack'
  ['ctrpy images delete']='rm'
  ['ctrpy images list']='ls'
  ['ctrpy images remove']='rm'
  ['ctrpy leases create']='create'
  ['ctrpy leases ls']='ls'
  ['ctrpy leases rm']='rm'
  ['ctrpy leases list']='ls'
  ['ctrpy leases remove']='rm'
  ['ctrpy leases delete']='rm'
  ['ctrpy leases del']='rm'
  ['ctrpy namespaces create']='create'
  ['ctrpy namespaces label']='label'
  ['ctrpy namespaces ls']='ls'
  ['ctrpy namespaces rm']='rm'
  ['ctrpy namespaces list']='ls'
  ['ctrpy namespaces remove']='rm'
  ['ctrpy namespaces delete']='rm'
  ['ctrpy namespaces del']='rm'
  ['ctrpy network check']='check'
  ['ctrpy network create']='create'
  ['ctrpy network inspect']='inspect'
  ['ctrpy network ls']='ls'
  ['ctrpy network prune']='prune'
  ['ctrpy network rm']='rm'
  ['ctrpy network list']='ls'
  ['ctrpy network remove']='rm'
  ['ctrpy network delete']='rm'
  ['ctrpy network del']='rm'
  ['ctrpy runtime create']='create'
  ['ctrpy runtime delete']='delete'
  ['ctrpy runtime exec']='exec'
  ['ctrpy runtime kill']='kill'
  ['ctrpy runtime list']='list'
  ['ctrpy runtime pause']='pause'
  ['ctrpy runtime ps']='ps'
  ['ctrpy runtime resume']='resume'
  ['ctrpy runtime run']='run'
  ['ctrpy runtime start']='start'
  ['ctrpy runtime state']='state'
  ['ctrpy snapshots commit']='commit'
  ['ctrpy snapshots info']='info'
  ['ctrpy snapshots label']='label'
  ['ctrpy snapshots ls']='ls'
  ['ctrpy snapshots mounts']='mounts'
  ['ctrpy snapshots prepare']='prepare'
  ['ctrpy snapshots rm']='rm'
  ['ctrpy snapshots tree']='tree'
  ['ctrpy snapshots usage']='usage'
  ['ctrpy snapshots view']='view'
  ['ctrpy snapshots list']='ls'
  ['ctrpy snapshots remove']='rm'
  ['ctrpy snapshots delete']='rm'
  ['ctrpy snapshots del']='rm'
  ['ctrpy tasks attach']='attach'
  ['ctrpy tasks exec']='exec'
  ['ctrpy tasks kill']='kill'
  ['ctrpy tasks ls']='ls'
  ['ctrpy tasks metrics']='metrics'
  ['ctrpy tasks pause']='pause'
  ['ctrpy tasks ps']='ps'
  ['ctrpy tasks resume']='resume'
  ['ctrpy tasks rm']='rm'
  ['ctrpy tasks start']='start'
  ['ctrpy tasks wait']='wait'
  ['ctrpy tasks list']='ls'
  ['ctrpy tasks remove']='rm'
  ['ctrpy tasks delete']='rm'
  ['ctrpy tasks del']='rm'
)
# command path -> its options
declare -gA _ctrpy_opts=(
  ['ctrpy']='--root --state --namespace -n --config --debug --version -h --help'
  ['ctrpy completion']='-h --help'
  ['ctrpy config']='-h --help'
  ['ctrpy config default']='-h --help'
  ['ctrpy config dump']='-h --help'
  ['ctrpy containers']='-h --help'
  ['ctrpy containers create']='--network --net --ip --publish -p --add-host --dns --dns-search --dns-option --env -e --env-file --label --cwd --user -u --mount --tty -t --rootfs --snapshotter --runtime --hostname --read-only --privileged --cap-add --cap-drop --memory-limit --cpus --cpu-shares --pids-limit --net-host -h --help'
  ['ctrpy containers info']='--spec --format -h --help'
  ['ctrpy containers label']='-h --help'
  ['ctrpy containers ls']='--quiet -q --format -h --help'
  ['ctrpy containers rm']='--force -f --keep-snapshot -h --help'
  ['ctrpy content']='-h --help'
  ['ctrpy content abort']='-h --help'
  ['ctrpy content active']='--quiet -q --format -h --help'
  ['ctrpy content get']='-h --help'
  ['ctrpy content ingest']='--expected-digest --expected-size --label -h --help'
  ['ctrpy content label']='-h --help'
  ['ctrpy content ls']='--quiet -q --format -h --help'
  ['ctrpy content rm']='-h --help'
  ['ctrpy events']='--since --topic --limit --all-namespaces -A --format -h --help'
  ['ctrpy exec']='--exec-id --tty -t --detach -d --env -e --cwd --user -u -h --help'
  ['ctrpy gc']='--dry-run --format -h --help'
  ['ctrpy images']='-h --help'
  ['ctrpy images check']='--quiet -q --format -h --help'
  ['ctrpy images inspect']='--platform --format -h --help'
  ['ctrpy images ls']='--quiet -q --format -h --help'
  ['ctrpy images pull']='--platform --all-platforms --no-unpack --snapshotter --max-concurrent-downloads --deadline --user -u --plain-http --skip-verify -k --tlscacert --tlscert --tlskey --hosts-dir --progress-timeout --quiet -q -h --help'
  ['ctrpy images push']='--platform --max-concurrent-uploads --user -u --plain-http --skip-verify -k --tlscacert --tlscert --tlskey --hosts-dir --progress-timeout --quiet -q -h --help'
  ['ctrpy images rm']='-h --help'
  ['ctrpy images tag']='--force -f -h --help'
  ['ctrpy images unpack']='--snapshotter --platform -h --help'
  ['ctrpy info']='--format -h --help'
  ['ctrpy leases']='-h --help'
  ['ctrpy leases create']='--id --expires -x -h --help'
  ['ctrpy leases ls']='--quiet -q --format -h --help'
  ['ctrpy leases rm']='-h --help'
  ['ctrpy login']='--username -u --password -p --password-stdin --docker-config --plain-http --skip-verify -k --tlscacert --tlscert --tlskey --hosts-dir --progress-timeout -h --help'
  ['ctrpy logout']='--docker-config -h --help'
  ['ctrpy logs']='--follow -f --tail -h --help'
  ['ctrpy namespaces']='-h --help'
  ['ctrpy namespaces create']='-h --help'
  ['ctrpy namespaces label']='-h --help'
  ['ctrpy namespaces ls']='--quiet -q --format -h --help'
  ['ctrpy namespaces rm']='-h --help'
  ['ctrpy network']='-h --help'
  ['ctrpy network check']='-h --help'
  ['ctrpy network create']='--subnet --gateway --bridge --mtu --label -h --help'
  ['ctrpy network inspect']='--format -h --help'
  ['ctrpy network ls']='--quiet -q --format -h --help'
  ['ctrpy network prune']='--format -h --help'
  ['ctrpy network rm']='-h --help'
  ['ctrpy ps']='--quiet -q --format -h --help'
  ['ctrpy pull']='--platform --all-platforms --no-unpack --snapshotter --max-concurrent-downloads --deadline --user -u --plain-http --skip-verify -k --tlscacert --tlscert --tlskey --hosts-dir --progress-timeout --quiet -q -h --help'
  ['ctrpy push']='--platform --max-concurrent-uploads --user -u --plain-http --skip-verify -k --tlscacert --tlscert --tlskey --hosts-dir --progress-timeout --quiet -q -h --help'
  ['ctrpy run']='--rm --detach -d --security-opt --userns-remap --network --net --ip --publish -p --add-host --dns --dns-search --dns-option --env -e --env-file --label --cwd --user -u --mount --tty -t --rootfs --snapshotter --runtime --hostname --read-only --privileged --cap-add --cap-drop --memory-limit --cpus --cpu-shares --pids-limit --net-host -h --help'
  ['ctrpy runtime']='--root --log --log-format --systemd-cgroup -h --help'
  ['ctrpy runtime create']='--bundle -b --pid-file --console-socket --preserve-fds -h --help'
  ['ctrpy runtime delete']='--force -f -h --help'
  ['ctrpy runtime exec']='--process -p --pid-file --console-socket --detach -d --tty -t --cwd --env -e --user -u -h --help'
  ['ctrpy runtime kill']='--all -a -h --help'
  ['ctrpy runtime list']='--format -f --quiet -q -h --help'
  ['ctrpy runtime pause']='-h --help'
  ['ctrpy runtime ps']='--format -f -h --help'
  ['ctrpy runtime resume']='-h --help'
  ['ctrpy runtime run']='--bundle -b --pid-file --console-socket --detach -d --preserve-fds -h --help'
  ['ctrpy runtime start']='-h --help'
  ['ctrpy runtime state']='-h --help'
  ['ctrpy snapshots']='--snapshotter -h --help'
  ['ctrpy snapshots commit']='--label --snapshotter -h --help'
  ['ctrpy snapshots info']='--snapshotter --format -h --help'
  ['ctrpy snapshots label']='--snapshotter -h --help'
  ['ctrpy snapshots ls']='--snapshotter --quiet -q --format -h --help'
  ['ctrpy snapshots mounts']='--snapshotter -h --help'
  ['ctrpy snapshots prepare']='--target --mounts --label --snapshotter -h --help'
  ['ctrpy snapshots rm']='--snapshotter -h --help'
  ['ctrpy snapshots tree']='--snapshotter -h --help'
  ['ctrpy snapshots usage']='--snapshotter --format -h --help'
  ['ctrpy snapshots view']='--target --mounts --label --snapshotter -h --help'
  ['ctrpy tasks']='-h --help'
  ['ctrpy tasks attach']='-h --help'
  ['ctrpy tasks exec']='--exec-id --tty -t --detach -d --env -e --cwd --user -u -h --help'
  ['ctrpy tasks kill']='--signal -s --all -a --exec-id -h --help'
  ['ctrpy tasks ls']='--quiet -q --format -h --help'
  ['ctrpy tasks metrics']='--format -h --help'
  ['ctrpy tasks pause']='-h --help'
  ['ctrpy tasks ps']='--quiet -q --format -h --help'
  ['ctrpy tasks resume']='-h --help'
  ['ctrpy tasks rm']='--force -f -h --help'
  ['ctrpy tasks start']='--detach -d -h --help'
  ['ctrpy tasks wait']='--exec-id -h --help'
  ['ctrpy version']='--format -h --help'
)
# 'path option' -> what completes its value (only options that take one)
declare -gA _ctrpy_valopt=(
  ['ctrpy --root']=':dir'
  ['ctrpy --state']=':dir'
  ['ctrpy --namespace']='@namespace'
  ['ctrpy -n']='@namespace'
  ['ctrpy --config']=':file'
  ['ctrpy containers create --network']='bridge host none @network'
  ['ctrpy containers create --net']='bridge host none @network'
  ['ctrpy containers create --ip']='-'
  ['ctrpy containers create --publish']='-'
  ['ctrpy containers create -p']='-'
  ['ctrpy containers create --add-host']='-'
  ['ctrpy containers create --dns']='-'
  ['ctrpy containers create --dns-search']='-'
  ['ctrpy containers create --dns-option']='-'
  ['ctrpy containers create --env']='-'
  ['ctrpy containers create -e']='-'
  ['ctrpy containers create --env-file']=':file'
  ['ctrpy containers create --label']='-'
  ['ctrpy containers create --cwd']='-'
  ['ctrpy containers create --user']='-'
  ['ctrpy containers create -u']='-'
  ['ctrpy containers create --mount']='-'
  ['ctrpy containers create --rootfs']=':dir'
  ['ctrpy containers create --snapshotter']='native overlayfs'
  ['ctrpy containers create --runtime']='crun ctrpy runc'
  ['ctrpy containers create --hostname']='-'
  ['ctrpy containers create --cap-add']='-'
  ['ctrpy containers create --cap-drop']='-'
  ['ctrpy containers create --memory-limit']='-'
  ['ctrpy containers create --cpus']='-'
  ['ctrpy containers create --cpu-shares']='-'
  ['ctrpy containers create --pids-limit']='-'
  ['ctrpy containers info --format']='json'
  ['ctrpy containers ls --format']='table json'
  ['ctrpy content active --format']='table json'
  ['ctrpy content ingest --expected-digest']='-'
  ['ctrpy content ingest --expected-size']='-'
  ['ctrpy content ingest --label']='-'
  ['ctrpy content ls --format']='table json'
  ['ctrpy events --since']='-'
  ['ctrpy events --topic']='-'
  ['ctrpy events --limit']='-'
  ['ctrpy events --format']='table json'
  ['ctrpy exec --exec-id']='-'
  ['ctrpy exec --env']='-'
  ['ctrpy exec -e']='-'
  ['ctrpy exec --cwd']='-'
  ['ctrpy exec --user']='-'
  ['ctrpy exec -u']='-'
  ['ctrpy gc --format']='table json'
  ['ctrpy images check --format']='table json'
  ['ctrpy images inspect --platform']='-'
  ['ctrpy images inspect --format']='json'
  ['ctrpy images ls --format']='table json'
  ['ctrpy images pull --platform']='-'
  ['ctrpy images pull --snapshotter']='native overlayfs'
  ['ctrpy images pull --max-concurrent-downloads']='-'
  ['ctrpy images pull --deadline']='-'
  ['ctrpy images pull --user']='-'
  ['ctrpy images pull -u']='-'
  ['ctrpy images pull --tlscacert']=':file'
  ['ctrpy images pull --tlscert']=':file'
  ['ctrpy images pull --tlskey']=':file'
  ['ctrpy images pull --hosts-dir']=':dir'
  ['ctrpy images pull --progress-timeout']='-'
  ['ctrpy images push --platform']='-'
  ['ctrpy images push --max-concurrent-uploads']='-'
  ['ctrpy images push --user']='-'
  ['ctrpy images push -u']='-'
  ['ctrpy images push --tlscacert']=':file'
  ['ctrpy images push --tlscert']=':file'
  ['ctrpy images push --tlskey']=':file'
  ['ctrpy images push --hosts-dir']=':dir'
  ['ctrpy images push --progress-timeout']='-'
  ['ctrpy images unpack --snapshotter']='native overlayfs'
  ['ctrpy images unpack --platform']='-'
  ['ctrpy info --format']='table json'
  ['ctrpy leases create --id']='-'
  ['ctrpy leases create --expires']='-'
  ['ctrpy leases create -x']='-'
  ['ctrpy leases ls --format']='table json'
  ['ctrpy login --username']='-'
  ['ctrpy login -u']='-'
  ['ctrpy login --password']='-'
  ['ctrpy login -p']='-'
  ['ctrpy login --docker-config']=':dir'
  ['ctrpy login --tlscacert']=':file'
  ['ctrpy login --tlscert']=':file'
  ['ctrpy login --tlskey']=':file'
  ['ctrpy login --hosts-dir']=':dir'
  ['ctrpy login --progress-timeout']='-'
  ['ctrpy logout --docker-config']=':dir'
  ['ctrpy logs --tail']='-'
  ['ctrpy namespaces ls --format']='table json'
  ['ctrpy network create --subnet']='-'
  ['ctrpy network create --gateway']='-'
  ['ctrpy network create --bridge']='-'
  ['ctrpy network create --mtu']='-'
  ['ctrpy network create --label']='-'
  ['ctrpy network inspect --format']='json'
  ['ctrpy network ls --format']='table json'
  ['ctrpy network prune --format']='table json'
  ['ctrpy ps --format']='table json'
  ['ctrpy pull --platform']='-'
  ['ctrpy pull --snapshotter']='native overlayfs'
  ['ctrpy pull --max-concurrent-downloads']='-'
  ['ctrpy pull --deadline']='-'
  ['ctrpy pull --user']='-'
  ['ctrpy pull -u']='-'
  ['ctrpy pull --tlscacert']=':file'
  ['ctrpy pull --tlscert']=':file'
  ['ctrpy pull --tlskey']=':file'
  ['ctrpy pull --hosts-dir']=':dir'
  ['ctrpy pull --progress-timeout']='-'
  ['ctrpy push --platform']='-'
  ['ctrpy push --max-concurrent-uploads']='-'
  ['ctrpy push --user']='-'
  ['ctrpy push -u']='-'
  ['ctrpy push --tlscacert']=':file'
  ['ctrpy push --tlscert']=':file'
  ['ctrpy push --tlskey']=':file'
  ['ctrpy push --hosts-dir']=':dir'
  ['ctrpy push --progress-timeout']='-'
  ['ctrpy run --security-opt']='-'
  ['ctrpy run --userns-remap']='-'
  ['ctrpy run --network']='bridge host none @network'
  ['ctrpy run --net']='bridge host none @network'
  ['ctrpy run --ip']='-'
  ['ctrpy run --publish']='-'
  ['ctrpy run -p']='-'
  ['ctrpy run --add-host']='-'
  ['ctrpy run --dns']='-'
  ['ctrpy run --dns-search']='-'
  ['ctrpy run --dns-option']='-'
  ['ctrpy run --env']='-'
  ['ctrpy run -e']='-'
  ['ctrpy run --env-file']=':file'
  ['ctrpy run --label']='-'
  ['ctrpy run --cwd']='-'
  ['ctrpy run --user']='-'
  ['ctrpy run -u']='-'
  ['ctrpy run --mount']='-'
  ['ctrpy run --rootfs']=':dir'
  ['ctrpy run --snapshotter']='native overlayfs'
  ['ctrpy run --runtime']='crun ctrpy runc'
  ['ctrpy run --hostname']='-'
  ['ctrpy run --cap-add']='-'
  ['ctrpy run --cap-drop']='-'
  ['ctrpy run --memory-limit']='-'
  ['ctrpy run --cpus']='-'
  ['ctrpy run --cpu-shares']='-'
  ['ctrpy run --pids-limit']='-'
  ['ctrpy runtime --root']=':dir'
  ['ctrpy runtime --log']=':file'
  ['ctrpy runtime --log-format']='text json'
  ['ctrpy runtime create --bundle']='-'
  ['ctrpy runtime create -b']='-'
  ['ctrpy runtime create --pid-file']='-'
  ['ctrpy runtime create --console-socket']='-'
  ['ctrpy runtime create --preserve-fds']='-'
  ['ctrpy runtime exec --process']='-'
  ['ctrpy runtime exec -p']='-'
  ['ctrpy runtime exec --pid-file']='-'
  ['ctrpy runtime exec --console-socket']='-'
  ['ctrpy runtime exec --cwd']='-'
  ['ctrpy runtime exec --env']='-'
  ['ctrpy runtime exec -e']='-'
  ['ctrpy runtime exec --user']='-'
  ['ctrpy runtime exec -u']='-'
  ['ctrpy runtime list --format']='table json'
  ['ctrpy runtime list -f']='table json'
  ['ctrpy runtime ps --format']='table json'
  ['ctrpy runtime ps -f']='table json'
  ['ctrpy runtime run --bundle']='-'
  ['ctrpy runtime run -b']='-'
  ['ctrpy runtime run --pid-file']='-'
  ['ctrpy runtime run --console-socket']='-'
  ['ctrpy runtime run --preserve-fds']='-'
  ['ctrpy snapshots --snapshotter']='native overlayfs'
  ['ctrpy snapshots commit --label']='-'
  ['ctrpy snapshots commit --snapshotter']='native overlayfs'
  ['ctrpy snapshots info --snapshotter']='native overlayfs'
  ['ctrpy snapshots info --format']='json'
  ['ctrpy snapshots label --snapshotter']='native overlayfs'
  ['ctrpy snapshots ls --snapshotter']='native overlayfs'
  ['ctrpy snapshots ls --format']='table json'
  ['ctrpy snapshots mounts --snapshotter']='native overlayfs'
  ['ctrpy snapshots prepare --target']='-'
  ['ctrpy snapshots prepare --label']='-'
  ['ctrpy snapshots prepare --snapshotter']='native overlayfs'
  ['ctrpy snapshots rm --snapshotter']='native overlayfs'
  ['ctrpy snapshots tree --snapshotter']='native overlayfs'
  ['ctrpy snapshots usage --snapshotter']='native overlayfs'
  ['ctrpy snapshots usage --format']='table json'
  ['ctrpy snapshots view --target']='-'
  ['ctrpy snapshots view --label']='-'
  ['ctrpy snapshots view --snapshotter']='native overlayfs'
  ['ctrpy tasks exec --exec-id']='-'
  ['ctrpy tasks exec --env']='-'
  ['ctrpy tasks exec -e']='-'
  ['ctrpy tasks exec --cwd']='-'
  ['ctrpy tasks exec --user']='-'
  ['ctrpy tasks exec -u']='-'
  ['ctrpy tasks kill --signal']='SIGABRT SIGALRM SIGBUS SIGCHLD SIGCONT SIGFPE SIGHUP SIGILL SIGINT SIGIO SIGKILL SIGPIPE SIGPROF SIGPWR SIGQUIT SIGRTMAX SIGRTMIN SIGSEGV SIGSTKFLT SIGSTOP SIGSYS SIGTERM SIGTRAP SIGTSTP SIGTTIN SIGTTOU SIGURG SIGUSR1 SIGUSR2 SIGVTALRM SIGWINCH SIGXCPU SIGXFSZ'
  ['ctrpy tasks kill -s']='SIGABRT SIGALRM SIGBUS SIGCHLD SIGCONT SIGFPE SIGHUP SIGILL SIGINT SIGIO SIGKILL SIGPIPE SIGPROF SIGPWR SIGQUIT SIGRTMAX SIGRTMIN SIGSEGV SIGSTKFLT SIGSTOP SIGSYS SIGTERM SIGTRAP SIGTSTP SIGTTIN SIGTTOU SIGURG SIGUSR1 SIGUSR2 SIGVTALRM SIGWINCH SIGXCPU SIGXFSZ'
  ['ctrpy tasks kill --exec-id']='-'
  ['ctrpy tasks ls --format']='table json'
  ['ctrpy tasks metrics --format']='table json'
  ['ctrpy tasks ps --format']='table json'
  ['ctrpy tasks wait --exec-id']='-'
  ['ctrpy version --format']='table json'
)
# command path -> argument slots (';'-separated, '*' repeats, '-' nothing)
declare -gA _ctrpy_args=(
  ['ctrpy completion']='bash zsh fish'
  ['ctrpy config default']=''
  ['ctrpy config dump']=''
  ['ctrpy containers create']='@image;-;*-'
  ['ctrpy containers info']='@container'
  ['ctrpy containers label']='@container;*-'
  ['ctrpy containers ls']='*-'
  ['ctrpy containers rm']='*@container'
  ['ctrpy content abort']='*-'
  ['ctrpy content active']=''
  ['ctrpy content get']='@content'
  ['ctrpy content ingest']='-'
  ['ctrpy content label']='@content;*-'
  ['ctrpy content ls']='*-'
  ['ctrpy content rm']='*@content'
  ['ctrpy events']=''
  ['ctrpy exec']='@running-task;*-'
  ['ctrpy gc']=''
  ['ctrpy images check']='*-'
  ['ctrpy images inspect']='@image'
  ['ctrpy images ls']='*-'
  ['ctrpy images pull']='-'
  ['ctrpy images push']='@image;@image'
  ['ctrpy images rm']='*@image'
  ['ctrpy images tag']='@image;*-'
  ['ctrpy images unpack']='@image'
  ['ctrpy info']=''
  ['ctrpy leases create']='*-'
  ['ctrpy leases ls']='*-'
  ['ctrpy leases rm']='*@lease'
  ['ctrpy login']='-'
  ['ctrpy logout']='-'
  ['ctrpy logs']='@task'
  ['ctrpy namespaces create']='-;*-'
  ['ctrpy namespaces label']='@namespace;*-'
  ['ctrpy namespaces ls']=''
  ['ctrpy namespaces rm']='*@namespace'
  ['ctrpy network check']='@container'
  ['ctrpy network create']='-'
  ['ctrpy network inspect']='*@network'
  ['ctrpy network ls']=''
  ['ctrpy network prune']=''
  ['ctrpy network rm']='*@network'
  ['ctrpy ps']=''
  ['ctrpy pull']='-'
  ['ctrpy push']='@image;@image'
  ['ctrpy run']='@image;-;*-'
  ['ctrpy runtime create']='-'
  ['ctrpy runtime delete']='-'
  ['ctrpy runtime exec']='-;*-'
  ['ctrpy runtime kill']='-;-'
  ['ctrpy runtime list']=''
  ['ctrpy runtime pause']='-'
  ['ctrpy runtime ps']='-'
  ['ctrpy runtime resume']='-'
  ['ctrpy runtime run']='-'
  ['ctrpy runtime start']='-'
  ['ctrpy runtime state']='-'
  ['ctrpy snapshots commit']='-;@snapshot'
  ['ctrpy snapshots info']='@snapshot'
  ['ctrpy snapshots label']='@snapshot;*-'
  ['ctrpy snapshots ls']='*-'
  ['ctrpy snapshots mounts']=':dir;@snapshot'
  ['ctrpy snapshots prepare']='@snapshot;@snapshot'
  ['ctrpy snapshots rm']='*@snapshot'
  ['ctrpy snapshots tree']=''
  ['ctrpy snapshots usage']='@snapshot'
  ['ctrpy snapshots view']='@snapshot;@snapshot'
  ['ctrpy tasks attach']='@running-task'
  ['ctrpy tasks exec']='@running-task;*-'
  ['ctrpy tasks kill']='@running-task'
  ['ctrpy tasks ls']=''
  ['ctrpy tasks metrics']='@running-task'
  ['ctrpy tasks pause']='*@running-task'
  ['ctrpy tasks ps']='@running-task'
  ['ctrpy tasks resume']='*@paused-task'
  ['ctrpy tasks rm']='*@task'
  ['ctrpy tasks start']='@container'
  ['ctrpy tasks wait']='@task'
  ['ctrpy version']=''
)
# command paths whose options end at the first argument
declare -gA _ctrpy_noint=(
  ['ctrpy containers create']=1
  ['ctrpy exec']=1
  ['ctrpy run']=1
  ['ctrpy tasks exec']=1
)

# The value kinds: @KIND asks `ctrpy __complete KIND` (stored names), :file/:dir complete paths.
_ctrpy_values() {
    local tok line
    for tok in $1; do
        case $tok in
            -) ;;
            @*)
                while IFS= read -r line; do
                    [[ -n $line ]] && _ctrpy_cands+=("$line")
                done < <("$_ctrpy_cmd" __complete "${tok#@}" "${_ctrpy_glob[@]}" 2>/dev/null)
                ;;
            :file)
                compopt -o filenames 2>/dev/null
                while IFS= read -r line; do _ctrpy_cands+=("$line"); done < <(compgen -f -- "$_ctrpy_cur")
                ;;
            :dir)
                compopt -o filenames 2>/dev/null
                while IFS= read -r line; do _ctrpy_cands+=("$line"); done < <(compgen -d -- "$_ctrpy_cur")
                ;;
            *) _ctrpy_cands+=("$tok") ;;
        esac
    done
}

_ctrpy() {
    local line words
    # Split the line ourselves: COMP_WORDS breaks image refs at ':' (COMP_WORDBREAKS).
    if [[ -n ${COMP_LINE+x} ]]; then
        line=${COMP_LINE:0:${COMP_POINT:-${#COMP_LINE}}}
    else
        # Rejoin what COMP_WORDBREAKS split: ':' and '=' glue to their neighbours.
        local k w prevw=""
        line=""
        for (( k = 0; k <= COMP_CWORD; k++ )); do
            w=${COMP_WORDS[k]}
            (( k > 0 )) && [[ $w != [:=] && $prevw != [:=] ]] && line+=" "
            line+=$w
            prevw=$w
        done
    fi
    read -ra words <<< "$line"
    local cur=""
    if [[ $line != *[[:space:]] ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    (( ${#words[@]} )) || return 0
    local _ctrpy_cmd=${words[0]} _ctrpy_cur=$cur
    local -a _ctrpy_glob=() _ctrpy_cands=()
    local node=ctrpy word opt val valkind="" i=1 n=${#words[@]} pos=0 dashdash=0
    while (( i < n )); do
        word=${words[i]}
        if (( ! dashdash )) && [[ $word == -?* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )); then
            if [[ $word == -- ]]; then
                dashdash=1
            else
                opt=${word%%=*}
                if [[ -n ${_ctrpy_valopt["$node $opt"]+x} ]]; then
                    if [[ $word == *=* ]]; then
                        val=${word#*=}
                    elif (( i + 1 < n )); then
                        i=$((i + 1)); val=${words[i]}
                    else
                        valkind=${_ctrpy_valopt["$node $opt"]}
                        break
                    fi
                    case "$node $opt" in
                        "ctrpy --root"|"ctrpy --state"|"ctrpy -n"|"ctrpy --namespace"|"ctrpy --config"|*" --snapshotter")
                            _ctrpy_glob+=("$opt" "$val") ;;
                    esac
                fi
            fi
        elif [[ -n ${_ctrpy_children[$node]+x} ]]; then
            word=${_ctrpy_alias["$node $word"]}
            [[ -n $word ]] || return 0
            node="$node $word"
        else
            pos=$((pos + 1))
        fi
        i=$((i + 1))
    done
    local prefix=""
    if [[ -z $valkind && $cur == -?*=* && -n ${_ctrpy_valopt["$node ${cur%%=*}"]+x} ]]; then
        valkind=${_ctrpy_valopt["$node ${cur%%=*}"]}
        prefix=${cur%%=*}=
        _ctrpy_cur=${cur#*=}
    fi
    if [[ -n $valkind ]]; then
        _ctrpy_values "$valkind"
    elif [[ $cur == -* ]] && ! (( pos > 0 && ${_ctrpy_noint[$node]:-0} )) && (( ! dashdash )); then
        _ctrpy_cands=(${_ctrpy_opts[$node]})
    elif [[ -n ${_ctrpy_children[$node]+x} ]]; then
        _ctrpy_cands=(${_ctrpy_children[$node]})
    else
        local -a slots
        IFS=';' read -ra slots <<< "${_ctrpy_args[$node]}"
        local slot="-" k
        for (( k = 0; k < ${#slots[@]}; k++ )); do
            if [[ ${slots[k]} == \** ]]; then
                slot=${slots[k]#\*}; break
            elif (( k == pos )); then
                slot=${slots[k]}; break
            fi
        done
        _ctrpy_values "$slot"
    fi
    COMPREPLY=()
    local c cut=""
    # Readline replaces only the text after the last ':' or '=' of COMP_WORDBREAKS: answer with that part.
    if [[ $COMP_WORDBREAKS == *:* && $cur == *:* ]]; then
        cut=${cur%"${cur##*:}"}
    fi
    for c in "${_ctrpy_cands[@]}"; do
        c=$prefix$c
        [[ $c == "$cur"* ]] || continue
        [[ -n $cut ]] && c=${c#"$cut"}
        [[ -n $prefix && -z $cut && $COMP_WORDBREAKS == *=* ]] && c=${c#"$prefix"}
        COMPREPLY+=("$c")
    done
    return 0
}

complete -F _ctrpy ctrpy
