# bash completion for llmq
_llmq()
{
	local cur prev cmd i
	cur=${COMP_WORDS[COMP_CWORD]}
	prev=${COMP_WORDS[COMP_CWORD-1]}
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		--socket | --window | --priority | --name | --limit | --interval | -o) ((i++)) ;;
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	case $prev in
	--socket | -o) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--window | --priority | --name | --limit | --interval | --idempotency-key) return ;;
	esac
	if [[ -z $cmd ]]; then
		COMPREPLY=($(compgen -W "submit status list wait results cancel ping metrics --json --socket --help --version" -- "$cur"))
		return
	fi
	case $cmd in
	submit) COMPREPLY=($(compgen -W "--window --priority --name --dry-run --retry --idempotency-key --json" -- "$cur"))
		[[ $cur != -* ]] && COMPREPLY+=($(compgen -f -- "$cur")) ;;
	results) COMPREPLY=($(compgen -W "-o --errors --json" -- "$cur")) ;;
	wait) COMPREPLY=($(compgen -W "--interval --json" -- "$cur")) ;;
	list) COMPREPLY=($(compgen -W "--limit --json" -- "$cur")) ;;
	*) COMPREPLY=($(compgen -W "--json" -- "$cur")) ;;
	esac
	if [[ $cur != -* && $cmd =~ ^(status|wait|results|cancel)$ ]]; then
		COMPREPLY+=($(compgen -W "$(llmq list --json 2>/dev/null | sed -n 's/.*"id": "\(b_[0-9a-f]*\)".*/\1/p')" -- "$cur"))
	fi
}
complete -F _llmq llmq
