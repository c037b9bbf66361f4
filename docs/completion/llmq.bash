# bash completion for llmq
_llmq()
{
	local cur prev cmd i
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--socket | --window | --priority | --name | --idempotency-key | --limit | --state | --since | --until | --by | --interval | -o | --output) ((i++)) ;;
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	case $prev in
	--socket | -o | --output) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--state)
		# several states go with commas: complete the one after the last comma
		local done=${cur%"${cur##*,}"}
		COMPREPLY=($(compgen -P "$done" -W "validating in_progress cancelling completed cancelled failed" -- "${cur##*,}"))
		return ;;
	--since | --until) COMPREPLY=($(compgen -W "30m 1h 24h 7d now today yesterday $(date +%F)" -- "$cur")); return ;;
	--by)
		local keys=${cur%"${cur##*,}"}
		COMPREPLY=($(compgen -P "$keys" -W "user model lane class day none" -- "${cur##*,}"))
		return ;;
	--window | --priority | --name | --limit | --interval | --idempotency-key) return ;;
	esac
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "submit status list wait results cancel ping metrics usage pause resume retry set help --json --socket --help --version" -- "$cur"))
		return
	fi
	case $cmd in
	submit) COMPREPLY=($(compgen -W "--window --priority --name --dry-run --retry --idempotency-key --json --socket --help" -- "$cur"))
		[[ $cur != -* ]] && COMPREPLY+=($(compgen -f -- "$cur")) ;;
	results) COMPREPLY=($(compgen -W "-o --output --errors --json --socket --help" -- "$cur")) ;;
	wait) COMPREPLY=($(compgen -W "--interval --json --socket --help" -- "$cur")) ;;
	list) COMPREPLY=($(compgen -W "--limit --state --since -q --quiet --json --socket --help" -- "$cur")) ;;
	usage) COMPREPLY=($(compgen -W "--since --until --by --utc --csv --json --socket --help" -- "$cur")) ;;
	retry) COMPREPLY=($(compgen -W "--failed --json --socket --help" -- "$cur")) ;;
	set) [[ $cur == *=* ]] || COMPREPLY=($(compgen -S = -W "max_concurrency tpm_limit rpm_limit headroom stagger_seconds" -- "$cur")) ;;
	help) COMPREPLY=($(compgen -W "submit status list wait results cancel ping metrics usage pause resume retry set" -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "--json --socket --help" -- "$cur")) ;;
	esac
	if [[ $cur != -* && $cmd =~ ^(status|wait|results|cancel|pause|resume|retry)$ ]]; then
		COMPREPLY+=($(compgen -W "$(llmq list -q 2>/dev/null)" -- "$cur"))
	fi
}
complete -F _llmq llmq
