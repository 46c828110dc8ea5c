// expect: AfterStage<N> needs N = 1, 2, 3 or 4
#include <halsal/nets/aliases.hpp>
halsal::HalSalNet<halsal::ResNet<18>, halsal::Depth<4>, halsal::AfterStage<5>> net(10);
